"""The paper's four CIC datasets: where their files live, which are captures, how to label them.

Every path below is relative to the dataset's *base*: the folder the CIC portal serves as
``download.php?file=<portal_prefix><path>`` and a plain mirror serves as ``MIRROR/<path>``.
The same relative layout is what ``janus download --local DIR`` expects under ``DIR`` and what
``janus download`` writes under ``--out``; archives are extracted beside themselves into a
folder named after the archive (``PCAPs/Tor.zip`` -> ``PCAPs/Tor/``).

File names were checked against public download scripts and notes that name them (the CIC
portal itself cannot be reached from here). Entries marked ``verified=False`` (and commented
``UNVERIFIED``) could not be confirmed; when a name is wrong, fix it without touching code
with an override file (``--registry FILE`` or ``$JANUS_DATASETS_FILE``), for example::

    datasets:
      iscxtor2016:
        rename: {PCAPs/Tor.zip: PCAPs/Tor.tar.xz}
      cicids2017:
        portal_url: https://cicresearch.ca/CICDataset/CIC-IDS-2017

Each dataset also carries its labelling rule as data (:class:`LabelRule`); the workflow turns
it into ``janus labels`` options with :meth:`LabelRule.to_cli_args`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from janus.contract import BENIGN
from janus.errors import ConfigError, JanusError

#: Environment variable naming a registry override file (YAML or JSON).
REGISTRY_ENV = "JANUS_DATASETS_FILE"

#: Suffixes that are never captures, whatever a capture glob matches (extension-less CIC-DDoS2019
#: captures are matched by name, so an archive or checksum beside them must be excluded).
NON_CAPTURE_SUFFIXES: tuple[str, ...] = (
    ".zip", ".tar", ".gz", ".xz", ".bz2", ".md5", ".sha256", ".csv", ".txt", ".json", ".part",
    ".html", ".pdf",
)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset, as published.

    ``path`` is relative to the dataset base, '/'-separated. ``md5``/``sha256`` are hex
    digests where published; ``md5_file`` names a sibling file holding the published MD5
    (CICIDS2017 ships one per capture), fetched first and used to verify ``path``.
    ``extract`` marks an archive to unpack after download. ``verified`` is False where the
    name could not be confirmed against a public source.
    """

    path: str
    md5: str | None = None
    sha256: str | None = None
    md5_file: str | None = None
    size: int | None = None
    extract: bool = False
    verified: bool = True


@dataclass(frozen=True)
class LabelRule:
    """How flows of a dataset get their labels; data that becomes ``janus labels`` options.

    ``method`` says which kind of rule it is (the labels step combines whatever options it
    is given; the method documents the intent and drives :meth:`label_for`):

    * ``"csv"`` -- join flows to the CIC CSVs matched by ``csv_globs`` (5-tuple + time). The
      CSV timestamps are local time ``utc_offset_hours`` from UTC; ``time_offset="auto"``
      asks the labels step to confirm (or find) the offset from the data.
      ``attacker_ips`` label any remaining flow to/from these hosts as attacks.
    * ``"file"`` -- a capture's label comes from its path: the first ``(glob, label)`` of
      ``file_labels`` that matches the path relative to the dataset root wins.
    * ``"folder"`` -- a capture's label is the name of its folder; folders in
      ``benign_folders`` are benign (``janus labels --by-folder`` knows them by name).
    """

    method: str
    csv_globs: tuple[str, ...] = ()
    utc_offset_hours: float | None = None
    time_offset: str | None = None
    attacker_ips: tuple[str, ...] = ()
    file_labels: tuple[tuple[str, str], ...] = ()
    benign_folders: tuple[str, ...] = ()

    METHODS = ("csv", "file", "folder")

    def __post_init__(self) -> None:
        if self.method not in self.METHODS:
            raise ConfigError(f"label rule method {self.method!r} is not one of {self.METHODS}")

    def to_cli_args(self, root: str | os.PathLike | None = None) -> list[str]:
        """The ``janus labels`` options of this rule.

        With ``root`` (the download folder), CSV globs are expanded to the sorted CSV files
        under it (``--csv`` takes paths); without it they are passed on as globs relative
        to the dataset root. File globs start with '*' so that they match the capture paths
        recorded by extraction whether those are relative or absolute.
        """
        args: list[str] = []
        for pattern in self.csv_globs:
            if root is None:
                args += ["--csv", pattern]
            else:
                args += ["--csv", *(str(p) for p in sorted(Path(root).glob(pattern))
                                    if p.is_file())]
        if self.utc_offset_hours is not None:
            args += ["--utc-offset-hours", _fmt_hours(self.utc_offset_hours)]
        if self.time_offset is not None:
            args += ["--time-offset", self.time_offset]
        for ip in self.attacker_ips:
            args += ["--attacker", ip]
        for pattern, label in self.file_labels:
            args += ["--file-class", f"{pattern}={label}"]
        if self.method == "folder":
            args += ["--by-folder"]
        return args

    def label_for(self, relpath: str) -> str | None:
        """The attack name a capture at ``relpath`` gets under a file/folder rule.

        ``relpath`` is relative to the dataset root, '/'-separated. Returns
        :data:`janus.contract.BENIGN` for benign captures, ``None`` for CSV rules (labels come
        per flow) and for a file rule that no glob matches.
        """
        if self.method == "file":
            for pattern, label in self.file_labels:
                if fnmatch.fnmatchcase(relpath, pattern):
                    return label
            return None
        if self.method == "folder":
            parent = PurePosixPath(relpath).parent.name
            if not parent:
                return None
            return BENIGN if parent in self.benign_folders else parent
        return None


@dataclass(frozen=True)
class Dataset:
    """A dataset of the paper: its files on the CIC portal, its captures and its label rule.

    ``portal_url`` is the dataset's folder on the portal (``insert.php``, ``download.php`` and
    ``browse.php`` live there); ``portal_prefix`` is prepended to a relative path to form the
    portal's ``file=`` parameter. ``listed_dirs`` are folders whose file names are not fixed
    (CICIoT2023 has one folder per class): the downloader reads their listing.
    ``capture_globs`` select, under the download folder and after extraction, the files
    that are packet captures (CIC-DDoS2019's have no extension).
    """

    name: str
    title: str
    homepage: str
    portal_url: str
    portal_prefix: str
    files: tuple[RemoteFile, ...]
    capture_globs: tuple[str, ...]
    label_rule: LabelRule
    listed_dirs: tuple[str, ...] = ()
    mirror_hint: str = ""
    notes: str = ""

    def file(self, path: str) -> RemoteFile:
        """The registered file at ``path``; :class:`ConfigError` naming the known ones if absent."""
        for f in self.files:
            if f.path == path:
                return f
        raise ConfigError(f"{self.name}: no file {path!r} in the registry; known: "
                          + ", ".join(f.path for f in self.files))

    def select(self, only: Iterable[str] = ()) -> tuple[tuple[RemoteFile, ...], tuple[str, ...]]:
        """Files and listed folders matching any of the ``only`` globs (all when empty).

        A selected file's ``md5_file`` is selected with it. A listed folder is selected when a
        glob matches the folder or a path inside it (``PCAP/Benign_Final/*``).
        """
        patterns = list(only)
        if not patterns:
            return self.files, self.listed_dirs
        chosen = [f for f in self.files if matches_any(f.path, patterns)]
        wanted = {f.md5_file for f in chosen if f.md5_file}
        chosen += [f for f in self.files if f.path in wanted and f not in chosen]
        dirs = tuple(d for d in self.listed_dirs if _dir_may_match(d, patterns))
        order = {f.path: i for i, f in enumerate(self.files)}
        return tuple(sorted(chosen, key=lambda f: order[f.path])), dirs

    def find_captures(self, root: str | os.PathLike) -> list[Path]:
        """The capture files under ``root`` (a download folder), sorted by relative path."""
        root = Path(root)
        found: dict[str, Path] = {}
        for pattern in self.capture_globs:
            for path in root.glob(pattern):
                name = path.name.lower()
                if (not path.is_file() or name.startswith(".")
                        or name.endswith(NON_CAPTURE_SUFFIXES)):
                    continue
                found[path.relative_to(root).as_posix()] = path
        return [found[k] for k in sorted(found)]


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    """Whether the '/'-separated ``path`` matches any glob (``*`` also crosses '/')."""
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _dir_may_match(folder: str, patterns: Iterable[str]) -> bool:
    """Whether a glob matches ``folder`` or may match a file inside it (component-wise)."""
    parts = folder.split("/")
    for p in patterns:
        if fnmatch.fnmatchcase(folder, p):
            return True
        p_parts = p.split("/")
        if len(p_parts) > len(parts) and all(
                fnmatch.fnmatchcase(a, b) for a, b in zip(parts, p_parts, strict=False)):
            return True
    return False


def _fmt_hours(hours: float) -> str:
    return str(int(hours)) if float(hours).is_integer() else str(hours)


# --------------------------------------------------------------------------- the registry
_CICIDS2017_DAYS = (
    "Monday-WorkingHours",
    "Tuesday-WorkingHours",
    # The server spells this one with a lower-case 'w'; paths are case-sensitive.
    "Wednesday-workingHours",
    "Thursday-WorkingHours",
    "Friday-WorkingHours",
)

CICIDS2017 = Dataset(
    name="cicids2017",
    title="CIC-IDS2017 (Sharafaldin et al., ICISSP 2018)",
    homepage="https://www.unb.ca/cic/datasets/ids-2017.html",
    portal_url="https://cicresearch.ca/CICDataset/CIC-IDS-2017",
    portal_prefix="CIC-IDS-2017/",
    files=tuple(
        f
        for day in _CICIDS2017_DAYS
        for f in (
            # The checksum sibling is <day>.md5, not <day>.pcap.md5.
            RemoteFile(f"PCAPs/{day}.pcap", md5_file=f"PCAPs/{day}.md5"),
            RemoteFile(f"PCAPs/{day}.md5"),
        )
    )
    + (
        RemoteFile("CSVs/GeneratedLabelledFlows.zip", md5_file="CSVs/GeneratedLabelledFlows.md5",
                   extract=True),
        # UNVERIFIED: one public script fetches this sibling, another omits it; a missing
        # checksum file (404) only costs the verification, with a warning.
        RemoteFile("CSVs/GeneratedLabelledFlows.md5", verified=False),
    ),
    capture_globs=("PCAPs/*.pcap",),
    label_rule=LabelRule(
        method="csv",
        # The TrafficLabelling CSVs carry IPs, ports and times; MachineLearningCVE ones do not.
        csv_globs=("CSVs/GeneratedLabelledFlows/**/*.csv",),
        # CSV times are local time of the capture site (UTC-3 in July 2017).
        utc_offset_hours=-3.0,
        time_offset="auto",
    ),
    mirror_hint="http://205.174.165.80/CICDataset/CIC-IDS-2017/Dataset/CIC-IDS-2017/",
    notes="Five days, one capture per day (Monday benign only); ~50 GB of pcap.",
)

CICDDOS2019 = Dataset(
    name="cicddos2019",
    title="CIC-DDoS2019 (Sharafaldin et al., ICCST 2019)",
    homepage="https://www.unb.ca/cic/datasets/ddos-2019.html",
    portal_url="https://cicresearch.ca/CICDataset/CICDDoS2019",
    # UNVERIFIED: the portal's file= prefix for this dataset; "" matches the direct layout
    # http://cicresearch.ca/CICDataset/CICDDoS2019/Dataset/PCAPs/...
    portal_prefix="",
    files=(
        # Training day (2018-12-01) in four parts of extension-less captures SAT-01-12-2018_*.
        RemoteFile("PCAPs/01-12/PCAP-01-12_0-0249.zip", extract=True),
        RemoteFile("PCAPs/01-12/PCAP-01-12_0250-0499.zip", extract=True),
        RemoteFile("PCAPs/01-12/PCAP-01-12_0500-0749.zip", extract=True),
        RemoteFile("PCAPs/01-12/PCAP-01-12_0750-0818.zip", extract=True),
        # Testing day (2018-11-03): SAT-03-11-2018_0, SAT-03-11-2018_01, ...
        RemoteFile("PCAPs/03-11/PCAP-03-11.zip", extract=True),
        RemoteFile("CSVs/CSV-01-12.zip", extract=True),
        RemoteFile("CSVs/CSV-03-11.zip", extract=True),
    ),
    capture_globs=(
        "PCAPs/01-12/PCAP-01-12_*/**/SAT-01-12-2018_*",
        "PCAPs/03-11/PCAP-03-11/**/SAT-03-11-2018_*",
    ),
    label_rule=LabelRule(
        method="csv",
        csv_globs=("CSVs/CSV-01-12/**/*.csv", "CSVs/CSV-03-11/**/*.csv"),
        time_offset="auto",
        # The one attacking host of both days; victims are 192.168.50.1 (01-12), .4 (03-11).
        attacker_ips=("172.16.0.5",),
    ),
    mirror_hint="http://205.174.165.80/CICDataset/CICDDoS2019/Dataset/",
    notes="Captures are extension-less files inside the PCAP zips.",
)

ISCXTOR2016 = Dataset(
    name="iscxtor2016",
    title="ISCX Tor-nonTor 2016 (Lashkari et al., ICISSP 2017)",
    homepage="https://www.unb.ca/cic/datasets/tor.html",
    portal_url="https://cicresearch.ca/CICDataset/ISCX-Tor-NonTor-2017",
    portal_prefix="",
    files=(
        # One public inventory lists PCAPs/Tor.tar.xz instead; most scripts use Tor.zip.
        RemoteFile("PCAPs/Tor.zip", extract=True),
        RemoteFile("PCAPs/NonTor.tar.xz", extract=True),
        RemoteFile("CSVs/Scenario-A-merged_5s.csv"),
        RemoteFile("CSVs/Scenario-B-merged_5s.csv"),
    ),
    capture_globs=("PCAPs/Tor/**/*.pcap", "PCAPs/Tor/**/*.pcapng",
                   "PCAPs/NonTor/**/*.pcap", "PCAPs/NonTor/**/*.pcapng"),
    label_rule=LabelRule(
        method="file",
        # NonTor first: "PCAPs/NonTor/..." must not fall through to a Tor pattern.
        # The leading '*' lets the globs match absolute capture paths too.
        file_labels=(("*PCAPs/NonTor/*", BENIGN), ("*PCAPs/Tor/*", "tor")),
    ),
    mirror_hint="http://205.174.165.80/CICDataset/ISCX-Tor-NonTor-2017/Dataset/",
    notes="Tor traffic is the 'attack' class; scenario CSVs are kept for reference only.",
)

#: CICIoT2023 capture folders (one per class). Names checked against a public listing of
#: Dataset/PCAP/ where marked; the rest follow the CSV folders of the same release.
_CICIOT2023_CLASSES: tuple[tuple[str, bool], ...] = (
    ("Backdoor_Malware", True), ("Benign_Final", True), ("BrowserHijacking", True),
    ("CommandInjection", True), ("DDoS-ACK_Fragmentation", True), ("DDoS-HTTP_Flood", True),
    ("DDoS-ICMP_Flood", True), ("DDoS-ICMP_Fragmentation", True), ("DDoS-PSHACK_Flood", True),
    ("DDoS-RSTFINFlood", True),
    # UNVERIFIED below: taken from the CSV folder names (the PCAP folder spelling of the two
    # DDoS-PSHACK/RSTFIN folders above differs from their CSV spelling, so these may too).
    ("DDoS-SYN_Flood", False), ("DDoS-SlowLoris", False), ("DDoS-SynonymousIP_Flood", False),
    ("DDoS-TCP_Flood", False), ("DDoS-UDP_Flood", False), ("DDoS-UDP_Fragmentation", False),
    ("DNS_Spoofing", False), ("DictionaryBruteForce", False), ("DoS-HTTP_Flood", False),
    ("DoS-SYN_Flood", False), ("DoS-TCP_Flood", False), ("DoS-UDP_Flood", False),
    ("MITM-ArpSpoofing", False), ("Mirai-greeth_flood", False), ("Mirai-greip_flood", False),
    ("Mirai-udpplain", False), ("Recon-HostDiscovery", False), ("Recon-OSScan", False),
    ("Recon-PingSweep", False), ("Recon-PortScan", False), ("SqlInjection", False),
    ("Uploading_Attack", False), ("VulnerabilityScan", False), ("XSS", False),
)

CICIOT2023 = Dataset(
    name="ciciot2023",
    title="CICIoT2023 (Neto et al., Sensors 2023)",
    homepage="https://www.unb.ca/cic/datasets/iotdataset-2023.html",
    # UNVERIFIED: the registration endpoint for this dataset; its files sit under
    # .../CIC_IOT_Dataset2023/Dataset/PCAP/<class>/ in a browsable folder.
    portal_url="https://cicresearch.ca/IOTDataset/CIC_IOT_Dataset2023",
    portal_prefix="Dataset/",
    files=(
        # The benign captures are named in several public scripts; the other folders hold a
        # varying number of parts and are read from the folder listing.
        RemoteFile("PCAP/Benign_Final/BenignTraffic.pcap"),
        RemoteFile("PCAP/Benign_Final/BenignTraffic1.pcap"),
        RemoteFile("PCAP/Benign_Final/BenignTraffic2.pcap"),
        RemoteFile("PCAP/Benign_Final/BenignTraffic3.pcap"),
    ),
    listed_dirs=tuple(f"PCAP/{name}" for name, _ in _CICIOT2023_CLASSES
                      if name != "Benign_Final"),
    capture_globs=("PCAP/*/*.pcap", "PCAP/*/*.pcapng"),
    label_rule=LabelRule(method="folder", benign_folders=("Benign_Final",)),
    mirror_hint="http://cicresearch.ca/IOTDataset/CIC_IOT_Dataset2023/Dataset/",
    notes="The folder is the class; 33 attack classes and Benign_Final.",
)

#: The paper's datasets by canonical (lower-case) name.
DATASETS: dict[str, Dataset] = {d.name: d for d in (CICIDS2017, CICDDOS2019, ISCXTOR2016,
                                                     CICIOT2023)}


# --------------------------------------------------------------------------- look-up
def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def get_dataset(name: str, registry: Mapping[str, Dataset] | None = None) -> Dataset:
    """The dataset called ``name`` (case, '-' and '_' ignored: ``CIC-IDS2017`` works).

    ``registry`` defaults to :data:`DATASETS` with the overrides of ``$JANUS_DATASETS_FILE``
    applied. Raises :class:`JanusError` listing the known names (and the closest) on a typo.
    """
    if registry is None:
        registry = load_registry()
    by_key = {_key(k): d for k, d in registry.items()}
    found = by_key.get(_key(name))
    if found is not None:
        return found
    close = difflib.get_close_matches(_key(name), list(by_key), n=1)
    hint = f" (did you mean {by_key[close[0]].name!r}?)" if close else ""
    raise JanusError(f"unknown dataset {name!r}{hint}; known datasets: "
                     + ", ".join(sorted(registry)))


# --------------------------------------------------------------------------- overrides
_DATASET_FIELDS = {f.name for f in dataclasses.fields(Dataset)}
_FILE_FIELDS = {f.name for f in dataclasses.fields(RemoteFile)}
_RULE_FIELDS = {f.name for f in dataclasses.fields(LabelRule)}


def load_registry(path: str | os.PathLike | None = None,
                  base: Mapping[str, Dataset] | None = None) -> dict[str, Dataset]:
    """The registry with the overrides of ``path`` (or ``$JANUS_DATASETS_FILE``) applied.

    The file (YAML or JSON) holds ``datasets: {NAME: {...}}``. For a known dataset, any field
    of :class:`Dataset` replaces the built-in value (``files`` as a list of mappings with the
    fields of :class:`RemoteFile`, ``label_rule`` as a mapping merged into the built-in
    rule); ``rename: {OLD: NEW}`` fixes single file names; ``file_overrides: {PATH: {...}}``
    changes fields of one file (add a ``sha256``). An unknown NAME defines a new dataset and
    must give every field. Without a path and without the variable, the built-in registry.
    """
    registry = dict(DATASETS if base is None else base)
    if path is None:
        path = os.environ.get(REGISTRY_ENV) or None
    if path is None:
        return registry
    path = Path(path)
    doc = _read_mapping(path)
    unknown_top = set(doc) - {"datasets", "portal"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown_top)}; "
                          "expected 'datasets' (and optionally 'portal')")
    entries = doc.get("datasets") or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: 'datasets' must be a mapping of dataset name -> fields")
    for name, spec in entries.items():
        where = f"{path}: datasets.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping of fields")
        existing = next((d for k, d in registry.items() if _key(k) == _key(str(name))), None)
        ds = _apply_override(existing, str(name), spec, where)
        registry[ds.name] = ds
    return registry


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the dataset registry override: {exc}") from exc
    import yaml

    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return doc


def _apply_override(ds: Dataset | None, name: str, spec: dict[str, Any], where: str) -> Dataset:
    extra = {"rename", "file_overrides"}
    unknown = set(spec) - _DATASET_FIELDS - extra
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: "
                          f"{sorted(_DATASET_FIELDS | extra)}")
    fields: dict[str, Any] = {}
    for key, value in spec.items():
        if key in extra:
            continue
        if key == "files":
            fields[key] = tuple(_remote_file(v, f"{where}.files[{i}]")
                                for i, v in enumerate(value or ()))
        elif key == "label_rule":
            fields[key] = _label_rule(ds.label_rule if ds else None, value, f"{where}.label_rule")
        elif key in ("capture_globs", "listed_dirs"):
            if isinstance(value, str):
                value = [value]
            fields[key] = tuple(str(v) for v in value)
        else:
            fields[key] = value
    if ds is None:
        fields.setdefault("name", name)
        missing = _DATASET_FIELDS - set(fields) - {"listed_dirs", "mirror_hint", "notes"}
        if missing:
            raise ConfigError(f"{where}: a new dataset needs the field(s) {sorted(missing)}")
        ds = Dataset(**fields)
    else:
        fields["name"] = ds.name
        ds = dataclasses.replace(ds, **fields)
    renames = spec.get("rename") or {}
    changes = {old: {"path": new} for old, new in renames.items()}
    for old, change in (spec.get("file_overrides") or {}).items():
        if not isinstance(change, dict) or set(change) - _FILE_FIELDS:
            raise ConfigError(f"{where}.file_overrides.{old}: expected a mapping with keys "
                              f"among {sorted(_FILE_FIELDS)}")
        changes.setdefault(old, {}).update(change)
    if changes:
        known = {f.path for f in ds.files}
        missing_paths = sorted(set(changes) - known)
        if missing_paths:
            raise ConfigError(f"{where}: no registered file(s) {missing_paths} to rename or "
                              f"override; registered: {sorted(known)}")
        new_name = {old: c["path"] for old, c in changes.items() if "path" in c}
        files = []
        for f in ds.files:
            f = dataclasses.replace(f, **changes.get(f.path, {}))
            if f.md5_file in new_name:  # keep a capture pointing at its renamed checksum
                f = dataclasses.replace(f, md5_file=new_name[f.md5_file])
            files.append(f)
        ds = dataclasses.replace(ds, files=tuple(files))
    return ds


def _remote_file(value: Any, where: str) -> RemoteFile:
    if isinstance(value, str):
        return RemoteFile(value)
    if not isinstance(value, dict) or "path" not in value or set(value) - _FILE_FIELDS:
        raise ConfigError(f"{where}: expected a path or a mapping with 'path' and keys among "
                          f"{sorted(_FILE_FIELDS)}")
    return RemoteFile(**value)


def _label_rule(base: LabelRule | None, value: Any, where: str) -> LabelRule:
    if not isinstance(value, dict) or set(value) - _RULE_FIELDS:
        raise ConfigError(f"{where}: expected a mapping with keys among {sorted(_RULE_FIELDS)}")
    value = dict(value)
    for key in ("csv_globs", "attacker_ips", "benign_folders"):
        if key in value:
            value[key] = tuple(value[key])
    if "file_labels" in value:
        pairs = value["file_labels"]
        items = pairs.items() if isinstance(pairs, dict) else pairs
        value["file_labels"] = tuple((str(p), str(lab)) for p, lab in items)
    if base is None:
        if "method" not in value:
            raise ConfigError(f"{where}: a new label rule needs 'method'")
        return LabelRule(**value)
    return dataclasses.replace(base, **value)


def portal_settings(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The optional ``portal:`` section of the override file (form field names, endpoints)."""
    if path is None:
        path = os.environ.get(REGISTRY_ENV) or None
    if path is None:
        return {}
    section = _read_mapping(Path(path)).get("portal") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'portal' must be a mapping")
    return section
