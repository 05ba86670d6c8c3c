import json

from tests.harness import run_cli


def test_space_show_basic_and_large():
    out = run_cli("space", "show", "basic")
    assert out.returncode == 0, out.stderr
    assert "searchable layers: 22" in out.stdout
    assert "size: 6.645e17 = 3 * 6^6 * 7^15" in out.stdout
    out = run_cli("space", "show", "large")
    assert "size: 1.549e27 = 3 * 18^6 * 19^15" in out.stdout


def test_space_show_json_and_sample_and_arch_info():
    data = json.loads(run_cli("space", "show", "proxyless", "--json").stdout)
    assert len(data["layers"]) == 22 and data["layers"][0]["input"] == "112x112x32"
    archs = run_cli("space", "sample", "basic", "-n", "5", "--seed", "3").stdout.split()
    assert len(archs) == 5 and len(set(archs)) == 5
    info = run_cli("arch", "info", archs[0], "--space", "basic", "--json")
    assert info.returncode == 0, info.stderr
    payload = json.loads(info.stdout)
    assert payload["arch"] == archs[0] and payload["macs"] > 100e6 and payload["params"] > 1e6
    sampled = json.loads(run_cli("space", "sample", "large", "-n", "2", "--json").stdout)
    assert [s["space"] for s in sampled] == ["large", "large"]


def test_arch_info_reads_an_arch_json_file(tmp_path):
    arch = run_cli("space", "sample", "large", "-n", "1").stdout.strip()
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"space": "large", "arch": arch}))
    out = run_cli("arch", "info", str(path), "--space", "large")
    assert out.returncode == 0 and "MACs" in out.stdout


def test_bad_input_is_one_line_without_traceback(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("skeleton: [unclosed\n")
    cases = [
        ("space", "show", "huge"),
        ("space", "sample", "nope.json"),
        ("arch", "info", "K3E1|K3E3", "--space", "basic"),
        (
            "arch",
            "info",
            "K3E1|" + "-".join(["ID"] * 4) + "|" + "|".join(["K3E3-K3E3-K3E3-K3E3"] * 4) + "|K3E3",
            "--space",
            "basic",
        ),
        ("arch", "info", "missing.json"),
        ("space", "show", str(bad_yaml)),
    ]
    for args in cases:
        out = run_cli(*args)
        assert out.returncode == 2, args
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_space_show_json_reads_back_and_its_derived_keys_must_agree(tmp_path):
    shown = run_cli("space", "show", "basic", "--json").stdout
    f = tmp_path / "basic.json"
    f.write_text(shown)
    again = run_cli("space", "show", str(f), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(shown)
    data = json.loads(shown)
    data["layers"][3]["candidates"] = ["IBConv_K3_E3"]  # edited where it is derived, not in "candidates"
    f.write_text(json.dumps(data))
    out = run_cli("space", "show", str(f))
    assert out.returncode == 2 and "layers does not match the skeleton and candidates" in out.stderr


def test_an_architecture_file_of_another_space_is_refused(tmp_path):
    arch = run_cli("space", "sample", "basic", "-n", "1").stdout.strip()
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"space": "basic", "arch": arch}))
    out = run_cli("arch", "info", str(path), "--space", "proxyless")  # same layer count: it would parse
    assert out.returncode == 2 and "an architecture of space 'basic', not of 'proxyless'" in out.stderr
