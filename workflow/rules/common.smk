# All Python of the workflow: target lists, input/param functions, wildcard constraints.
# The janus package itself never sees `config`; everything reaches it on the command line.
# Parsing imports nothing of janus (the workflow may be a module of a project whose Snakemake
# runs without it): what it needs is read from files of the workflow's own source tree (the
# schema, janus/__init__.py), local or fetched by Snakemake's source cache.

import hashlib
import json
import os
import re
import shlex
from pathlib import Path

from snakemake.io import report as report_page
from snakemake.logging import logger
from snakemake.sourcecache import HostingProviderFile, LocalGitFile, LocalSourceFile
from snakemake.utils import validate

# --------------------------------------------------------------------------- config
# Validated here rather than in the Snakefile: `--config` values arrive as strings
# (`--config train='{epochs: 3}'` gives {"epochs": "3"}), so they are first given the types
# the schema asks for, and a schema error is reported as one line naming its key instead of
# Snakemake's dump of the whole schema.

CONFIG_SCHEMA = Path(str(workflow.source_path("../schemas/config.schema.yaml")))


def _resolve(schema, root):
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema if isinstance(schema, dict) else {}


def _allows_string(schema, root):
    """Whether a string is a valid kind of value here (then a --config string stays one)."""
    schema = _resolve(schema, root)
    options = schema.get("oneOf", []) + schema.get("anyOf", [])
    if options:
        return any(_allows_string(option, root) for option in options)
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        return any(isinstance(v, str) for v in values)
    kinds = schema.get("type")
    if kinds is None:
        return True
    return "string" in ([kinds] if isinstance(kinds, str) else kinds)


def _child(schema, key, root):
    schema = _resolve(schema, root)
    if isinstance(key, int):
        return schema.get("items", {})
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    extra = schema.get("additionalProperties", {})
    return extra if isinstance(extra, dict) else {}


def typed_override(value, schema, root):
    """A --config value with the types the schema asks for: '3' -> 3, 'false' -> False,
    '[1]' -> [1], recursively; strings where the schema allows strings stay strings."""
    import yaml

    if isinstance(value, str) and not _allows_string(schema, root):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, dict):
        return {
            k: typed_override(v, _child(schema, k, root), root)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [typed_override(v, _child(schema, 0, root), root) for v in value]
    return value


def _merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def check_config(config):
    """Type the --config overrides, then validate against the schema (filling defaults);
    the first error names its key and what was wrong, in one line."""
    import jsonschema
    import yaml

    root = yaml.safe_load(CONFIG_SCHEMA.read_text())
    overrides = dict(workflow.config_settings.config or {})
    _merge(config, typed_override(overrides, root, root))
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(root).iter_errors(config)
    )
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(
            f"config key {where}: {error.message} (see the key's description in "
            f"workflow/schemas/config.schema.yaml)"
        )
    validate(config, str(CONFIG_SCHEMA))
    return root


SCHEMA = check_config(config)

# --------------------------------------------------------------------------- names

DATASETS = list(config["datasets"])
SEEDS = [int(s) for s in config["seeds"]]
DETECTORS = list(config["detectors"])
# Detectors built on the JANUS model (trained by janus.model.train, aggregated by OAS); the rest
# are baselines trained and scored by janus.detectors.
JANUS_KINDS = ("janus", "janus_cont")
JANUS_DETECTORS = [d for d in DETECTORS if d in JANUS_KINDS]
BASELINES = [d for d in DETECTORS if d not in JANUS_KINDS]
# The model-free, target-calibrated control row of every table (computed inside the evaluate
# jobs: OAS on the 20 flow features of each dataset's own calibration flows).
CONTROL = "feature_oas"
REPORT_DETECTORS = [CONTROL] + DETECTORS

# --------------------------------------------------------------------------- provenance
# The package this workflow's rules run: the source tree the workflow belongs to. Read here
# as text; janus.workflow_config has the same hash and fingerprint for the package's own use
# (tests/test_workflow.py checks that both agree).


def _janus_init():
    """The source tree's janus/__init__.py (a local path, fetched first for a remote
    module), or None where the workflow folder was copied without the package."""
    base = workflow.current_basedir  # workflow/rules of the source tree
    if isinstance(base, LocalSourceFile):
        # In place, not source_path's runtime copy: the fingerprint hashes its folder.
        path = Path(os.fspath(base)).parents[1] / "janus" / "__init__.py"
    else:
        try:
            path = Path(str(workflow.source_path("../../janus/__init__.py")))
        except Exception:  # a remote tree without it: Snakemake's own fetch error
            return None
    return path if path.is_file() else None


JANUS_INIT = _janus_init()


def janus_version():
    """__version__ of the workflow's own janus/__init__.py (what `pip install` of this source
    tree installs), read without importing it; else the installed janus-nids distribution's
    version (its metadata, again no import)."""
    if JANUS_INIT is not None:
        text = JANUS_INIT.read_text()
        match = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", text, re.M)
        if match is None:
            raise ValueError(f"{JANUS_INIT}: no __version__ = '...' line")
        return match.group(1)
    from importlib import metadata

    try:
        return metadata.version("janus-nids")
    except metadata.PackageNotFoundError:
        raise ValueError(
            f"{workflow.current_basedir}: no ../../janus/__init__.py beside the workflow "
            "and no janus-nids installed: cannot tell the janus version the rules run"
        ) from None


def code_fingerprint(version):
    """'<version>+<12 hex digits>': SHA-256 over every janus/*.py file (relative path, then
    content, in sorted path order), as janus.workflow_config.code_fingerprint."""
    if JANUS_INIT is None or not isinstance(workflow.current_basedir, LocalSourceFile):
        raise ValueError(
            "config key provenance.rerun_on_code_change: needs the workflow in a local "
            "checkout beside janus/ (its sources are hashed); use false otherwise"
        )
    root = JANUS_INIT.resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{version}+{digest.hexdigest()[:12]}"


def config_hash(cfg):
    """First 12 hex digits of the SHA-256 of the canonical JSON (sorted keys, no spaces) of
    the resolved config, as janus.workflow_config.config_hash."""
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def janus_source():
    """What the conda environment's post-deploy script installs: this workflow's own source
    tree (a local checkout's folder, or git+https://HOST/OWNER/REPO@REF of a module pulled
    with github(...)/gitlab(...), git+file:// for a local git repository's ref)."""
    base = workflow.current_basedir  # workflow/rules of the source tree
    if isinstance(base, LocalSourceFile):
        return str(Path(os.fspath(base)).parents[1])
    if isinstance(base, HostingProviderFile):
        return f"git+https://{base.host}/{base.repo}@{base.ref}"
    if isinstance(base, LocalGitFile):
        return f"git+file://{os.path.abspath(base.repo_path)}@{base.ref}"
    return None


# What Snakemake cannot see: edits inside the installed package. Rules whose results
# depend on janus carry this in params, so a new version (or, when asked, any source
# edit) reruns them; otherwise use --forcerun.
JANUS_VERSION = janus_version()
JANUS = (
    code_fingerprint(JANUS_VERSION)
    if config["provenance"]["rerun_on_code_change"]
    else JANUS_VERSION
)
CONFIG_HASH = config_hash(config)
# workflow/envs/janus.post-deploy.sh installs $JANUS_SRC; a value the user set wins.
if janus_source() is not None:
    os.environ.setdefault("JANUS_SRC", janus_source())

FIGURE_SEED = (
    config["report"]["figure_seed"]
    if config["report"]["figure_seed"] is not None
    else SEEDS[0]
)
if FIGURE_SEED not in SEEDS:
    raise ValueError(
        f"config key report.figure_seed = {FIGURE_SEED} is not one of seeds {SEEDS}"
    )

if workflow.config_settings.overwrite_config and not getattr(
    workflow.config_settings, "replace_workflow_config", False
):
    # --configfile merges into config/config.yaml: a paper run without
    # --replace-workflow-config would also run the four synthetic sites.
    logger.warning(
        "config/config.yaml was extended, not replaced, by the command-line config; "
        f"datasets in use: {', '.join(DATASETS)} "
        "(add --replace-workflow-config to use only the given config file)"
    )


def _fmt_sigma(value):
    """Sigma as it appears in run folder names: '0.1', '0.6' (equal sigmas share a model)."""
    return f"{float(value):g}"


SIGMA_WITHIN = _fmt_sigma(config["model"]["sigma_within"])
SIGMA_CROSS = _fmt_sigma(config["model"]["sigma_cross"])

# (source, target) pairs: a model trained on source is scored and evaluated on target.
PAIRS = [
    (s, t) for s in DATASETS for t in DATASETS if s == t or config["cross_dataset"]
]


wildcard_constraints:
    dataset="|".join(DATASETS),
    source="|".join(DATASETS),
    target="|".join(DATASETS),
    site=r"[A-Za-z0-9_]+",
    seed=r"\d+",
    part=r"\d+",
    sigma=r"[0-9][0-9.e+-]*",
    detector="|".join(DETECTORS),
    jdet="|".join(JANUS_KINDS),
    baseline="|".join(d for d in DETECTORS if d not in JANUS_KINDS) or "NONE",


# --------------------------------------------------------------------------- datasets


def source_kind(dataset):
    """'synth', 'download' or 'pcaps' (the schema guarantees exactly one)."""
    (kind,) = config["datasets"][dataset]["source"]
    return kind


def source_spec(dataset):
    return config["datasets"][dataset]["source"][source_kind(dataset)]


SYNTH_SITES = sorted(
    {source_spec(d)["site"] for d in DATASETS if source_kind(d) == "synth"}
)


def raw_download_dir(dataset):
    return f"data/raw/{dataset}"


def captures(wildcards):
    """Capture files of a dataset: what extract reads."""
    kind = source_kind(wildcards.dataset)
    spec = source_spec(wildcards.dataset)
    if kind == "synth":
        return [f"data/raw/synth/{spec['site']}/capture.pcap"]
    if kind == "download":
        return [f"{raw_download_dir(wildcards.dataset)}/captures.txt"]
    return list(spec["files"])


def capture_args(wildcards, input):
    """Capture paths on extract's command line. A download lists its captures in a file
    (their names are known only after archives are unpacked)."""
    if source_kind(wildcards.dataset) == "download":
        return f"--captures-from {shlex.quote(str(input[0]))}"
    return " ".join(shlex.quote(str(f)) for f in input)


# extract.per_file: each capture file of a dataset extracted by its own extract_part job (a
# cluster runs them side by side), the parts joined by one merge job (janus.merge; a flow
# that spans two files becomes two, README "Per-file extraction"). A dataset of one capture
# file (every synth site) keeps its one extract job. A download's capture list exists only
# after the download: the download rule is a checkpoint, and the merge's inputs are read
# from the list it wrote.


def per_file(dataset):
    """Whether dataset is extracted file by file (extract_part + merge)."""
    if not config["extract"]["per_file"]:
        return False
    kind = source_kind(dataset)
    if kind == "pcaps":
        return len(source_spec(dataset)["files"]) > 1
    return kind == "download"


PER_FILE = [d for d in DATASETS if per_file(d)]
# The rules' dataset patterns; "(?!)" matches nothing (no dataset of that kind).
STREAMED_RE = "|".join(d for d in DATASETS if d not in PER_FILE) or "(?!)"
PER_FILE_RE = "|".join(PER_FILE) or "(?!)"


def capture_files(dataset):
    """A dataset's capture paths, in order (a download's from its checkpoint's list)."""
    if source_kind(dataset) != "download":
        return list(source_spec(dataset)["files"])
    listing = Path(checkpoints.download.get(dataset=dataset).output.captures)
    lines = [line.strip() for line in listing.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def part_dir(dataset, index):
    """The extract_part output of the dataset's index-th capture file."""
    return f"data/{dataset}/parts/{index:05d}"


def part_capture(wildcards):
    """The one capture file an extract_part job reads."""
    files = capture_files(wildcards.dataset)
    index = int(wildcards.part)
    if index >= len(files):
        raise ValueError(
            f"{part_dir(wildcards.dataset, index)}: dataset {wildcards.dataset} has "
            f"{len(files)} capture files"
        )
    return files[index]


def merge_parts(wildcards):
    """Every part folder of a per-file dataset, in capture order."""
    files = capture_files(wildcards.dataset)
    return [part_dir(wildcards.dataset, k) for k in range(len(files))]


def merge_args(wildcards, input):
    return " ".join(shlex.quote(str(p)) for p in input.parts)


def synth_root(wildcards, output):
    """The --out folder of janus.datasets.synth: it writes <root>/<site>/..."""
    return str(Path(output.pcap).parent.parent)


def label_inputs(wildcards):
    """Files the labels step reads besides the extracted flows (label CSVs)."""
    kind = source_kind(wildcards.dataset)
    spec = source_spec(wildcards.dataset)
    if kind == "synth":
        return [f"data/raw/synth/{spec['site']}/GeneratedLabelledFlows.csv"]
    if kind == "download":
        return [f"{raw_download_dir(wildcards.dataset)}/captures.txt"]
    return list(spec.get("labels", {}).get("csv", []))


def label_args(wildcards, input):
    """Command-line options of janus.datasets.labels for a dataset's labelling rule."""
    kind = source_kind(wildcards.dataset)
    if kind == "synth":
        return " ".join(["--csv", *map(shlex.quote, input.extra)])
    if kind == "download":
        # The labels step applies the registry's rule itself (janus.datasets.registry, one
        # source of truth, also read by janus.download): its CSV globs name files that
        # exist only after the download.
        return " ".join(
            map(
                shlex.quote,
                [
                    "--registry-rule",
                    source_spec(wildcards.dataset)["dataset"],
                    "--registry-root",
                    raw_download_dir(wildcards.dataset),
                ],
            )
        )
    spec = source_spec(wildcards.dataset).get("labels", {})
    args = []
    if spec.get("csv"):
        args += ["--csv", *spec["csv"]]
    for attacker in spec.get("attackers", []):
        args += ["--attacker", attacker]
    if spec.get("by_folder"):
        args.append("--by-folder")
    for glob, cls in spec.get("file_class", {}).items():
        args += ["--file-class", f"{glob}={cls}"]
    args += ["--default", spec.get("default", "unknown")]
    args += ["--time-offset", str(spec.get("time_offset", "auto"))]
    if spec.get("utc_offset_hours") is not None:
        args += ["--utc-offset-hours", str(spec["utc_offset_hours"])]
    return " ".join(map(shlex.quote, args))


def download_args(wildcards):
    """--mirror / --local options of janus.datasets.download."""
    spec = source_spec(wildcards.dataset)
    args = []
    if spec.get("mirror"):
        args += ["--mirror", spec["mirror"]]
    if spec.get("local"):
        args += ["--local", spec["local"]]
    return " ".join(map(shlex.quote, args))


def download_name(wildcards):
    return source_spec(wildcards.dataset)["dataset"]


def data_dir(wildcards, input):
    return str(Path(input.stats).parent)


def out_dir(wildcards, output):
    return str(Path(output[0]).parent)


def optional_flags(section, names):
    """'--n-train 100 ...' for the non-null keys of a config section."""
    values = config[section]
    return " ".join(
        f"--{name.replace('_', '-')} {values[name]}"
        for name in names
        if values.get(name) is not None
    )


STORE_FLAGS = optional_flags("extract", ["store", "store_min_flows", "shard_flows"])
# janus extract also takes the streaming writer's bound (janus merge holds one shard anyway).
EXTRACT_FLAGS = " ".join(
    f for f in (STORE_FLAGS, optional_flags("extract", ["buffer_flows"])) if f
)
# A part is always a sharded store, so that the merge links its shards instead of rewriting
# them (the merged dataset's layout still follows extract.store).
PART_STORE_FLAGS = " ".join(
    f
    for f in (
        "--store sharded",
        optional_flags("extract", ["shard_flows", "buffer_flows"]),
    )
    if f
)
SPLIT_FLAGS = optional_flags(
    "splits", ["n_train", "n_val", "n_cal", "n_test_benign", "n_test_attack", "order"]
)
TRAIN_FLAGS = " ".join(
    filter(
        None,
        [
            optional_flags("train", ["epochs", "batch_size", "lr", "warmup_fraction"]),
            optional_flags("train", ["schedule"]),
            optional_flags("train", ["patience", "min_delta", "max_train_flows"]),
            optional_flags("model", ["ot", "ot_reg"]),
            "" if config["model"]["causal"] else "--full-attention",
            "--packets-see-flow" if config["model"]["packets_see_flow"] else "",
        ],
    )
)
MODEL_FLAGS = optional_flags("model", ["d_model", "n_layers", "n_heads"])
AGGREGATE_FLAGS = optional_flags("aggregate", ["sided", "collinear", "transform"])
# The Phase-1 path scores (janus.model.extended_scores), only when score.extended is true.
EXTENDED_FLAGS = (
    " ".join(["--extended", optional_flags("score", ["extended_steps", "probes"])])
    if config["score"]["extended"]
    else ""
)


# --------------------------------------------------------------------------- models
# Jobs are batched along targets: one score, baseline or evaluate job per (detector or
# not, source, seed) covers every target dataset, so each pays the Python start-up (torch,
# sklearn: seconds) once instead of once per (source, target) pair.


def targets_of(source):
    """Datasets a model trained on source is scored on, in DATASETS order."""
    return [t for s, t in PAIRS if s == source]


def per_target(pattern, **fixed):
    """The outputs of a (source, seed) job: pattern for every target of its source, in
    targets_of order (other keys of fixed expanded, remaining wildcards kept)."""
    if not config["cross_dataset"]:
        pattern = pattern.replace("{target}", "{source}")
        return expand(pattern, **fixed, allow_missing=True)
    return expand(pattern, **fixed, target=DATASETS, allow_missing=True)


def _of_targets(wildcards, pattern):
    return [
        pattern.format(target=t, seed=wildcards.seed)
        for t in targets_of(wildcards.source)
    ]


def source_dir(wildcards):
    return f"data/{wildcards.source}"


def target_dirs(wildcards):
    return _of_targets(wildcards, "data/{target}")


def target_stats(wildcards):
    return _of_targets(wildcards, "data/{target}/extract_stats.json")


def target_features(wildcards):
    return _of_targets(wildcards, "data/{target}/flow_features.parquet")


def target_labels(wildcards):
    return _of_targets(wildcards, "data/{target}/labels.parquet")


def target_splits(wildcards):
    return _of_targets(wildcards, "data/{target}/splits/seed{seed}.npz")


def lambda_disc(wildcards):
    """janus_cont is the continuous-only ablation: no discrete-channel loss."""
    return 0.0 if wildcards.jdet == "janus_cont" else config["model"]["lambda_disc"]


def sigma_for(source, target):
    return SIGMA_WITHIN if source == target else SIGMA_CROSS


def janus_checkpoints(wildcards):
    """Per target, the checkpoint that scores it: sigma_within on the source itself,
    sigma_cross elsewhere (the same file when the sigmas are equal)."""
    w = wildcards
    return [
        f"runs/{w.jdet}/{w.source}/seed{w.seed}_sigma{sigma_for(w.source, t)}/model.pt"
        for t in targets_of(w.source)
    ]


def janus_models(wildcards):
    """The distinct checkpoints of janus_checkpoints: the score job's model inputs."""
    return sorted(set(janus_checkpoints(wildcards)))


# Each baseline's hyper-parameters and inputs, from the schema (tests/test_workflow.py checks
# them against janus.detectors): only those with an `epochs` key get baselines.epochs; the
# schema's `x-inputs` (Detector.inputs: features, packets or both; features when absent) says
# which jobs read the packet tensors.
BASELINE_SPECS = {
    name: spec
    for name, spec in SCHEMA["properties"]["baselines"]["properties"].items()
    if spec.get("type") == "object"
}
BASELINE_KEYS = {
    name: set(spec.get("properties", {})) for name, spec in BASELINE_SPECS.items()
}
BASELINE_INPUTS = {
    name: spec.get("x-inputs", "features") for name, spec in BASELINE_SPECS.items()
}


def baseline_packets(wildcards):
    """The packet tensors of the source and every target (their extract_stats.json, which
    stands for packets.npz or packets/), for a baseline that reads packets
    (Detector.inputs); none for one on the flow features alone."""
    if BASELINE_INPUTS[wildcards.baseline] == "features":
        return []
    return sorted(
        {f"data/{wildcards.source}/extract_stats.json", *target_stats(wildcards)}
    )


def baseline_flags(wildcards):
    """--epochs and --param options of janus.detectors for one baseline detector."""
    name = wildcards.baseline
    args = []
    epochs = config["baselines"]["epochs"]
    if epochs is not None and "epochs" in BASELINE_KEYS[name]:
        args += ["--epochs", str(epochs)]
    for key, value in config["baselines"].get(name, {}).items():
        if value is not None:
            args += ["--param", f"{key}={json.dumps(value)}"]
    return " ".join(map(shlex.quote, args))


def raw_scores_path(detector, source, target, seed):
    """A detector's per-flow scores: the 10-d vector for JANUS, one column for baselines."""
    return f"results/scores/{detector}/{source}/{target}/seed{seed}.parquet"


def scores_path(detector, source, target, seed):
    """Per-flow scores evaluate reads: OAS-aggregated for JANUS, raw for baselines."""
    if detector in JANUS_KINDS:
        return f"results/agg/{detector}/{source}/{target}/seed{seed}.parquet"
    return raw_scores_path(detector, source, target, seed)


def evaluate_scores(wildcards):
    """Every score file of one (source, seed): each detector on each target."""
    s, seed = wildcards.source, wildcards.seed
    return [raw_scores_path(d, s, t, seed) for d in DETECTORS for t in targets_of(s)]


def control_scores_path(dataset, seed):
    """The model-free control's per-flow scores (fitted on the dataset's own cal flows)."""
    return f"results/agg/{CONTROL}/{dataset}/{dataset}/seed{seed}.parquet"


def evaluate_args(wildcards):
    """janus.evaluation.evaluate's aligned lists for every (detector, target) of one (source, seed);
    --aggregate pairs turn each JANUS score vector into its AGG file first (label-free), each
    with --source-fit (the uncalibrated column, fitted on the source's own scores), and
    --feature-oas writes the model-free control of the source dataset.
    """
    s, seed = wildcards.source, wildcards.seed
    runs = [(d, t) for d in DETECTORS for t in targets_of(s)]
    args = []
    for d, t in runs:
        if d in JANUS_KINDS:
            args += ["--aggregate", raw_scores_path(d, s, t, seed)]
            args += [scores_path(d, s, t, seed)]
            args += ["--source-fit", raw_scores_path(d, s, t, seed)]
            args += [raw_scores_path(d, s, s, seed), f"data/{s}/splits/seed{seed}.npz"]
    args += ["--feature-oas", f"data/{s}/flow_features.parquet"]
    args += [control_scores_path(s, seed)]
    runs.append((CONTROL, s))
    lists = {
        "--scores": [
            control_scores_path(s, seed) if d == CONTROL else scores_path(d, s, t, seed)
            for d, t in runs
        ],
        "--labels": [f"data/{t}/labels.parquet" for _, t in runs],
        "--splits": [f"data/{t}/splits/seed{seed}.npz" for _, t in runs],
        "--out": [f"results/metrics/{d}/{s}/{t}/seed{seed}.json" for d, t in runs],
        "--detector": [d for d, _ in runs],
        "--target": [t for _, t in runs],
    }
    for option, values in lists.items():
        args += [option, *values]
    return " ".join(map(shlex.quote, args))


# --------------------------------------------------------------------------- model folders
# One janus.models job per dataset writes every seed's folder from the within-site JANUS run
# (sigma_within): its checkpoint, raw scores (val + test flows) and metrics.

MODEL_FOLDER_FILES = ("model.json", "aggregator.json", "model.pt", "MODEL_CARD.md")
MODEL_FOLDERS = (
    expand(
        "results/models/{dataset}/seed{seed}/{file}",
        dataset=DATASETS,
        seed=SEEDS,
        file=MODEL_FOLDER_FILES,
    )
    if "janus" in DETECTORS
    else []
)


def _of_seeds(wildcards, pattern):
    return [
        pattern.format(d=wildcards.dataset, seed=seed, sigma=SIGMA_WITHIN)
        for seed in SEEDS
    ]


def deploy_checkpoints(wildcards):
    return _of_seeds(wildcards, "runs/janus/{d}/seed{seed}_sigma{sigma}/model.pt")


def deploy_scores(wildcards):
    return _of_seeds(wildcards, "results/scores/janus/{d}/{d}/seed{seed}.parquet")


def deploy_metrics(wildcards):
    return _of_seeds(wildcards, "results/metrics/janus/{d}/{d}/seed{seed}.json")


def deploy_splits(wildcards):
    return _of_seeds(wildcards, "data/{d}/splits/seed{seed}.npz")


def deploy_data(wildcards, input):
    return str(Path(input.stats).parent)


def deploy_out(wildcards, output):
    """results/models/<dataset>: the folder that receives seed<S>/."""
    return str(Path(output.manifests[0]).parent.parent)


def deploy_outputs(name):
    """One of the folder files of every seed of the rule's dataset."""
    return expand(
        "results/models/{dataset}/seed{seed}/{name}",
        seed=SEEDS,
        name=name,
        allow_missing=True,
    )


def res(step, key):
    return config["resources"][step][key]


_GPU_COUNT = []


def _local_gpu_count():
    """GPUs this machine shows (nvidia-smi -L), 0 without a driver or with none visible;
    asked once per run."""
    import shutil
    import subprocess

    if not _GPU_COUNT:
        count = 0
        smi = shutil.which("nvidia-smi")
        if smi is not None and os.environ.get("CUDA_VISIBLE_DEVICES") != "":
            try:
                listed = subprocess.run(
                    [smi, "-L"], capture_output=True, text=True, timeout=20
                ).stdout
                count = sum(line.startswith("GPU ") for line in listed.splitlines())
            except (OSError, subprocess.SubprocessError):
                count = 0
        _GPU_COUNT.append(count)
    return _GPU_COUNT[0]


def gpu_claim(wildcards):
    """GPUs a train or score job claims. `auto`: one under a cluster executor (the job's
    node is asked for it) or on a machine with a GPU, none on a CPU-only machine, so CPU
    jobs never queue behind a GPU claim. Evaluated per job, when the executor is known (a
    dry run counts as local)."""
    value = config["resources"]["gpu"]
    if value != "auto":
        return int(value)
    if not workflow.local_exec:
        return 1
    return 1 if _local_gpu_count() > 0 else 0


# --------------------------------------------------------------------------- targets

METRICS = [
    f"results/metrics/{d}/{s}/{t}/seed{seed}.json"
    for d in DETECTORS
    for s, t in PAIRS
    for seed in SEEDS
] + [
    f"results/metrics/{CONTROL}/{d}/{d}/seed{seed}.json"
    for d in DATASETS
    for seed in SEEDS
]

TABLES = [
    "results/cross_matrix.md",
    "results/within.md",
    "results/thresholded.md",
    "results/per_attack.md",
    "results/aggregators.md",
    "results/baselines.md",
]

# The ROC and histogram figures read the per-flow files of the within runs; every figure is
# also written as PDF beside its PNG.
FIGURES = ["results/figures/cross_matrix.png"] + expand(
    "results/figures/{kind}_{dataset}.png", kind=["roc", "hist"], dataset=DATASETS
)
# The PDF copies only with report.pdf (janus report --pdf).
FIGURE_PDFS = (
    [f.replace(".png", ".pdf") for f in FIGURES] if config["report"]["pdf"] else []
)
TABLE_PAGES = [
    t.replace("results/", "results/tables/").replace(".md", ".html") for t in TABLES
]


def figure_reports(kind, caption, subcategory):
    """results/figures/<kind>_<dataset>.png of every dataset, each a report page."""
    return [
        report_page(
            f"results/figures/{kind}_{d}.png",
            caption=caption,
            category="Figures",
            subcategory=subcategory,
            labels={"dataset": d},
        )
        for d in DATASETS
    ]


# Every trained model of the run, with the files made from it. The report depends on the
# models, and a model lost after its results were written (a forced retrain killed mid-way:
# Snakemake deletes the old model.pt before the job and its partial one after) makes those
# results stale. Snakemake itself skips a missing intermediate file whose downstream files
# are present (neither "missing" nor an mtime change reaches the model then), so at start the
# results made from a lost model, and the tables, are removed: the run then retrains and
# redoes the scoring, evaluation and report. A dry run only says so.
MODEL_RESULTS = {}
for _d in JANUS_DETECTORS + BASELINES:
    for _s, _t in PAIRS:
        for _seed in SEEDS:
            _model = (
                f"runs/{_d}/{_s}/seed{_seed}_sigma{sigma_for(_s, _t)}/model.pt"
                if _d in JANUS_KINDS
                else f"runs/{_d}/{_s}/seed{_seed}/detector.json"
            )
            MODEL_RESULTS.setdefault(_model, []).extend(
                [
                    raw_scores_path(_d, _s, _t, _seed),
                    scores_path(_d, _s, _t, _seed),
                    f"results/metrics/{_d}/{_s}/{_t}/seed{_seed}.json",
                ]
            )
MODEL_FILES = sorted(MODEL_RESULTS)


# Invocations that only look (or tidy Snakemake's own state): they never remove results.
_LOOK_ONLY = {
    "--dry-run",
    "--dryrun",
    "--report",
    "--unlock",
    "--lint",
    "--summary",
    "--detailed-summary",
    "--list-changes",
    "--lc",
    "--dag",
    "--rulegraph",
    "--filegraph",
    "--touch",
    "--cleanup-metadata",
    "--list-rules",
    "--list-target-rules",
    "--delete-all-output",
    "--delete-temp-output",
    "--archive",
    "--containerize",
}


def _dry_run():
    """Whether this invocation only looks: -n, -S, -D (alone or among short flags), --report,
    --unlock, ..."""
    import sys

    return any(
        a.split("=", 1)[0] in _LOOK_ONLY
        or (
            a.startswith("-")
            and not a.startswith("--")
            and a[1:].isalpha()
            and bool(set(a[1:]) & set("nSD"))
        )
        for a in sys.argv[1:]
    )


def remove_results_of_lost_models():
    """Remove the results (and tables) made from a model that is gone (see above)."""
    lost = [m for m in MODEL_FILES if not os.path.exists(m)]
    stale = [f for m in lost for f in MODEL_RESULTS[m] if os.path.exists(f)]
    if not stale:
        return
    stale += [
        f for f in TABLES + TABLE_PAGES + FIGURES + FIGURE_PDFS if os.path.exists(f)
    ]
    dry = _dry_run()
    logger.warning(
        f"{', '.join(lost)}: missing, but {len(stale)} result files were made from them (an "
        "interrupted retrain?); "
        + ("a real run removes and rebuilds them" if dry else "removed them to rebuild")
    )
    if not dry:
        for path in stale:
            os.remove(path)


remove_results_of_lost_models()

# The ROC figures draw the spread over every seed.
FIGURE_SCORES = [
    scores_path(det, d, d, seed)
    for det in DETECTORS
    for d in DATASETS
    for seed in SEEDS
] + [control_scores_path(d, seed) for d in DATASETS for seed in SEEDS]
FIGURE_DATA = expand(
    ["data/{dataset}/labels.parquet", "data/{dataset}/splits/seed{seed}.npz"],
    dataset=DATASETS,
    seed=SEEDS,
)
