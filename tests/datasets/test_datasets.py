"""Tests of janus/datasets/registry.py: the registry of the paper's datasets and its overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from janus.contract import BENIGN
from janus.datasets.registry import (
    DATASETS,
    REGISTRY_ENV,
    LabelRule,
    get_dataset,
    load_registry,
    portal_settings,
)
from janus.errors import ConfigError, JanusError


def test_the_four_datasets_are_registered():
    assert set(DATASETS) == {"cicids2017", "cicddos2019", "iscxtor2016", "ciciot2023"}
    for ds in DATASETS.values():
        assert ds.portal_url.startswith("https://") and ds.homepage.startswith("https://")
        paths = [f.path for f in ds.files]
        assert len(paths) == len(set(paths)), ds.name
        assert all(not p.startswith("/") and ".." not in p for p in paths)


@pytest.mark.parametrize("spelling", ["cicids2017", "CICIDS2017", "CIC-IDS2017", "cic_ids_2017"])
def test_lookup_ignores_case_and_separators(spelling, monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    assert get_dataset(spelling).name == "cicids2017"


def test_typo_names_known_datasets_and_the_closest(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    with pytest.raises(JanusError) as err:
        get_dataset("cicids2071")
    msg = str(err.value)
    assert "'cicids2071'" in msg and "did you mean 'cicids2017'" in msg
    for name in DATASETS:
        assert name in msg


def test_cicids2017_layout_and_md5_siblings():
    ds = DATASETS["cicids2017"]
    pcaps = [f for f in ds.files if f.path.endswith(".pcap")]
    assert [f.path for f in pcaps] == [
        "PCAPs/Monday-WorkingHours.pcap", "PCAPs/Tuesday-WorkingHours.pcap",
        "PCAPs/Wednesday-workingHours.pcap", "PCAPs/Thursday-WorkingHours.pcap",
        "PCAPs/Friday-WorkingHours.pcap"]
    for f in pcaps:
        assert f.md5_file == f.path[: -len(".pcap")] + ".md5"
        assert ds.file(f.md5_file).path == f.md5_file
    csv = ds.file("CSVs/GeneratedLabelledFlows.zip")
    assert csv.extract and csv.md5_file == "CSVs/GeneratedLabelledFlows.md5"
    assert ds.portal_prefix == "CIC-IDS-2017/"


def test_cicddos2019_parts_and_extensionless_captures(tmp_path):
    ds = DATASETS["cicddos2019"]
    assert [f.path for f in ds.files if "01-12" in f.path and f.path.startswith("PCAPs")] == [
        "PCAPs/01-12/PCAP-01-12_0-0249.zip", "PCAPs/01-12/PCAP-01-12_0250-0499.zip",
        "PCAPs/01-12/PCAP-01-12_0500-0749.zip", "PCAPs/01-12/PCAP-01-12_0750-0818.zip"]
    assert all(f.extract for f in ds.files)
    for rel in ["PCAPs/03-11/PCAP-03-11.zip", "PCAPs/03-11/PCAP-03-11/SAT-03-11-2018_0",
                "PCAPs/03-11/PCAP-03-11/SAT-03-11-2018_01", "PCAPs/03-11/PCAP-03-11/.hidden",
                "PCAPs/01-12/PCAP-01-12_0-0249/PCAP-01-12_0-0249/SAT-01-12-2018_0249",
                "PCAPs/01-12/PCAP-01-12_0-0249/SAT-01-12-2018_0.md5",
                "CSVs/CSV-03-11/03-11/Syn.csv"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in ds.find_captures(tmp_path)]
    assert found == ["PCAPs/01-12/PCAP-01-12_0-0249/PCAP-01-12_0-0249/SAT-01-12-2018_0249",
                     "PCAPs/03-11/PCAP-03-11/SAT-03-11-2018_0",
                     "PCAPs/03-11/PCAP-03-11/SAT-03-11-2018_01"]


def test_label_rules_as_labels_options(tmp_path):
    ids = DATASETS["cicids2017"].label_rule
    assert ids.to_cli_args() == [
        "--csv", "CSVs/GeneratedLabelledFlows/**/*.csv",
        "--utc-offset-hours", "-3", "--time-offset", "auto"]
    for rel in ["CSVs/GeneratedLabelledFlows/TrafficLabelling/b.csv",
                "CSVs/GeneratedLabelledFlows/TrafficLabelling/a.csv"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    expanded = ids.to_cli_args(tmp_path)
    assert expanded[:3] == ["--csv",
                            str(tmp_path / "CSVs/GeneratedLabelledFlows/TrafficLabelling/a.csv"),
                            str(tmp_path / "CSVs/GeneratedLabelledFlows/TrafficLabelling/b.csv")]
    ddos = DATASETS["cicddos2019"].label_rule.to_cli_args()
    assert ddos[-4:] == ["--time-offset", "auto", "--attacker", "172.16.0.5"]
    assert DATASETS["iscxtor2016"].label_rule.to_cli_args() == [
        "--file-class", f"*PCAPs/NonTor/*={BENIGN}", "--file-class", "*PCAPs/Tor/*=tor"]
    assert DATASETS["ciciot2023"].label_rule.to_cli_args() == ["--by-folder"]


def test_labels_step_accepts_the_options():
    labels = pytest.importorskip("janus.datasets.labels.step")
    parser = labels.build_parser()
    for ds in DATASETS.values():
        args = parser.parse_args(["--data", "d", *ds.label_rule.to_cli_args()])
        assert args.data == "d"


def test_labels_step_applies_a_registry_rule(tmp_path):
    """--registry-rule NAME --registry-root DIR (what the workflow's labels rule passes for a
    download) gives the options of the rule itself, CSV globs expanded under DIR, after the
    options given on the command line; a glob matching nothing is a one-line error."""
    labels = pytest.importorskip("janus.datasets.labels.step")
    parser = labels.build_parser()
    for rel in ["CSVs/CSV-01-12/01-12/b.csv", "CSVs/CSV-03-11/03-11/Syn.csv",
                "CSVs/CSV-01-12/a.csv"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    given = parser.parse_args(["--data", "d", "--attacker", "10.0.0.9=scan", "--registry-rule",
                               "CIC-DDoS2019", "--registry-root", str(tmp_path)])
    merged = labels.apply_registry_rule(given)
    explicit = parser.parse_args(["--data", "d", "--attacker", "10.0.0.9=scan",
                                  *DATASETS["cicddos2019"].label_rule.to_cli_args(tmp_path)])
    assert merged.csv == explicit.csv == [str(tmp_path / "CSVs/CSV-01-12/01-12/b.csv"),
                                          str(tmp_path / "CSVs/CSV-01-12/a.csv"),
                                          str(tmp_path / "CSVs/CSV-03-11/03-11/Syn.csv")]
    assert merged.attacker == ["10.0.0.9=scan", "172.16.0.5"]
    assert (merged.time_offset, merged.utc_offset_hours) == (explicit.time_offset,
                                                             explicit.utc_offset_hours)
    ids = parser.parse_args(["--data", "d", "--registry-rule", "cicids2017",
                             "--registry-root", str(tmp_path)])
    with pytest.raises(JanusError, match="no file matches 'CSVs/GeneratedLabelledFlows"):
        labels.apply_registry_rule(ids)
    tor = labels.apply_registry_rule(parser.parse_args(
        ["--data", "d", "--registry-rule", "iscxtor2016", "--registry-root", str(tmp_path)]))
    assert tor.file_class == [f"*PCAPs/NonTor/*={BENIGN}", "*PCAPs/Tor/*=tor"]
    assert labels.apply_registry_rule(parser.parse_args(
        ["--data", "d", "--registry-rule", "ciciot2023"])).by_folder


@pytest.mark.parametrize("name, rel, label", [
    ("iscxtor2016", "PCAPs/NonTor/NonTor/BROWSING_gate_SSL.pcap", BENIGN),
    ("iscxtor2016", "PCAPs/Tor/Tor/AUDIO_tor_spotify2.pcap", "tor"),
    ("iscxtor2016", "/data/tor/PCAPs/NonTor/x.pcap", BENIGN),
    ("iscxtor2016", "CSVs/Scenario-A-merged_5s.csv", None),
    ("ciciot2023", "PCAP/Benign_Final/BenignTraffic1.pcap", BENIGN),
    ("ciciot2023", "PCAP/DDoS-ICMP_Flood/DDoS-ICMP_Flood10.pcap", "DDoS-ICMP_Flood"),
    ("cicids2017", "PCAPs/Monday-WorkingHours.pcap", None),
])
def test_label_for_path(name, rel, label):
    assert DATASETS[name].label_rule.label_for(rel) == label


def test_tor_and_iot_captures(tmp_path):
    for rel in ["PCAPs/Tor/Tor/a.pcap", "PCAPs/NonTor/b.pcapng", "PCAPs/Tor.zip",
                "PCAP/Benign_Final/BenignTraffic.pcap", "PCAP/XSS/XSS.pcap", "PCAP/XSS/x.csv"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    tor = [p.relative_to(tmp_path).as_posix()
           for p in DATASETS["iscxtor2016"].find_captures(tmp_path)]
    assert tor == ["PCAPs/NonTor/b.pcapng", "PCAPs/Tor/Tor/a.pcap"]
    iot = [p.relative_to(tmp_path).as_posix()
           for p in DATASETS["ciciot2023"].find_captures(tmp_path)]
    assert iot == ["PCAP/Benign_Final/BenignTraffic.pcap", "PCAP/XSS/XSS.pcap"]


def test_select_with_only_globs():
    ds = DATASETS["cicids2017"]
    files, dirs = ds.select(["PCAPs/Monday*.pcap"])
    # The capture brings its checksum sibling along.
    assert [f.path for f in files] == ["PCAPs/Monday-WorkingHours.pcap",
                                       "PCAPs/Monday-WorkingHours.md5"]
    assert dirs == ()
    iot = DATASETS["ciciot2023"]
    files, dirs = iot.select(["PCAP/XSS/*"])
    assert files == () and dirs == ("PCAP/XSS",)
    files, dirs = iot.select(["PCAP/*"])
    assert len(files) == 4 and len(dirs) == 33


def test_yaml_override_renames_and_changes_fields(tmp_path, monkeypatch):
    override = tmp_path / "registry.yaml"
    override.write_text(
        "datasets:\n"
        "  iscxtor2016:\n"
        "    rename: {PCAPs/Tor.zip: PCAPs/Tor.tar.xz}\n"
        "    portal_url: https://example.invalid/tor\n"
        "  CIC-IDS2017:\n"
        "    rename: {PCAPs/Monday-WorkingHours.md5: PCAPs/Monday-WorkingHours.pcap.md5}\n"
        "    file_overrides:\n"
        "      PCAPs/Friday-WorkingHours.pcap: {sha256: " + "ab" * 32 + "}\n"
        "    label_rule: {utc_offset_hours: -4}\n"
        "portal:\n"
        "  register: register.php\n")
    monkeypatch.setenv(REGISTRY_ENV, str(override))
    tor = get_dataset("iscxtor2016")
    assert tor.portal_url == "https://example.invalid/tor"
    assert tor.file("PCAPs/Tor.tar.xz").extract
    ids = get_dataset("cicids2017")
    assert ids.file("PCAPs/Monday-WorkingHours.pcap").md5_file == \
        "PCAPs/Monday-WorkingHours.pcap.md5"
    assert ids.file("PCAPs/Friday-WorkingHours.pcap").sha256 == "ab" * 32
    assert ids.label_rule.utc_offset_hours == -4 and ids.label_rule.time_offset == "auto"
    assert portal_settings() == {"register": "register.php"}
    # The built-in registry is untouched.
    assert DATASETS["iscxtor2016"].file("PCAPs/Tor.zip")


def test_json_override_defines_a_new_dataset(tmp_path):
    override = tmp_path / "registry.json"
    override.write_text(json.dumps({"datasets": {"mylab": {
        "title": "My lab", "homepage": "https://example.invalid", "portal_url": "https://x",
        "portal_prefix": "", "files": ["a/b.zip", {"path": "c.pcap", "md5": "0" * 32}],
        "capture_globs": "c.pcap", "label_rule": {"method": "file",
                                                  "file_labels": {"c.pcap": "benign"}}}}}))
    reg = load_registry(override)
    ds = get_dataset("MYLAB", reg)
    assert [f.path for f in ds.files] == ["a/b.zip", "c.pcap"]
    assert ds.capture_globs == ("c.pcap",) and ds.label_rule.label_for("c.pcap") == "benign"
    assert set(DATASETS) < set(reg)


@pytest.mark.parametrize("text, needle", [
    ("datasets:\n  cicids2017:\n    portal_ur1: x\n", "portal_ur1"),
    ("datasets:\n  cicids2017:\n    rename: {PCAPs/nope.pcap: x}\n", "PCAPs/nope.pcap"),
    ("datasets:\n  newone: {title: x}\n", "needs the field"),
    ("dataset: {}\n", "unknown top-level"),
    ("datasets: [1, 2\n", "not valid"),
])
def test_bad_override_names_the_key(tmp_path, text, needle):
    override = tmp_path / "bad.yaml"
    override.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_registry(override)
    assert needle in str(err.value) and str(override) in str(err.value)


def test_label_rule_rejects_unknown_method():
    with pytest.raises(ConfigError, match="byip"):
        LabelRule(method="byip")


def test_missing_override_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_registry(Path(tmp_path / "nope.yaml"))
