"""The search-space spec both halves meet in: ops and shapes, a network's parts, spaces, architectures, the
torch modules they build, and what they cost. The search engine (`hnas`) trains and searches these modules;
the latency toolkit (`latency`) exports and measures the very same ones under keys derived from the same spec."""
