"""The model card: a short markdown page of what a model folder holds and how well it did."""

from __future__ import annotations

from typing import Any


def _f(x: Any, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def model_card(manifest: dict[str, Any], calibration) -> str:
    """The ``MODEL_CARD.md`` text of a model folder from its manifest and calibration."""
    prov = manifest.get("provenance", {})
    ex = manifest["extraction"]
    thr = calibration.thresholds
    src = calibration.source
    lines = [
        f"# JANUS model: {prov.get('dataset', '?')}, seed {prov.get('seed', '?')}",
        "",
        ("Unsupervised flow-matching intrusion detector trained on benign flows only. "
        "`janus detect CAPTURE --model THIS_FOLDER --out alerts.csv` scores new traffic; "
        "`--calibrate BENIGN.pcap` refits the aggregator and thresholds to a new site."),
        "",
        "## Model",
        (f"- JANUS {prov.get('janus_version', '?')}, config hash `{prov.get('config_hash', '?')}`, "
        f"weights of epoch {prov.get('best_epoch', '?')} (the best validation loss)"),
        f"- network: {prov.get('network', {})}",
        (f"- extraction: T = {ex['max_packets']} packets per flow, idle timeout "
        f"{ex['idle_timeout_s']} s, active timeout {ex.get('active_timeout_s')} s"),
        f"- score options: {manifest.get('score_options')}",
        (f"- training data: {prov.get('data', {}).get('captures', '?')} -> "
        f"{prov.get('flows', {}).get('dataset', '?')} flows; benign train "
        f"{prov.get('flows', {}).get('train', '?')}, benign validation "
        f"{prov.get('flows', {}).get('val', '?')}, benign calibration "
        f"{prov.get('flows', {}).get('cal', '?')}, test {prov.get('flows', {}).get('test', '?')}"),
        "",
        "## Aggregator and thresholds",
        (f"- scalar: `{calibration.aggregator.method}` Mahalanobis distance over "
        f"{list(calibration.aggregator.used)} ({calibration.aggregator.options})"),
        (f"- fitted on {src.get('n_flows', '?')} benign flows ({src.get('kind', '?')}: "
        f"{src.get('captures') or src.get('splits', '?')})"),
        (f"- thresholds (alert = score > threshold): p95 {_f(thr['p95'])}, p99 {_f(thr['p99'])}, "
        f"fpr={thr['target_fpr']:g} {_f(thr['fpr'])}"),
    ]
    if src.get("calibrated_from"):
        lines.append(f"- calibrated from the model folder `{src['calibrated_from']}`; the test "
                     "metrics below are the original site's")
    metrics = manifest.get("test_metrics") or {}
    if metrics:
        lines += ["", "## Test metrics (the training site's test split)", "",
                  (f"{metrics.get('n_benign', '?')} benign and {metrics.get('n_attack', '?')} attack "
                  "test flows."), "",
                  "| scalar | AUROC | AUPRC | TPR@1%FPR | F1@p95 | FPR@p95 | F1@p99 | FPR@p99 |",
                  "|---|---|---|---|---|---|---|---|"]
        for col, m in metrics.get("columns", {}).items():
            p95, p99 = m.get("p95", {}), m.get("p99", {})
            lines.append(f"| {col} | {_f(m.get('auroc'))} | {_f(m.get('auprc'))} | "
                         f"{_f(m.get('tpr_at_1fpr'))} | {_f(p95.get('f1'))} | {_f(p95.get('fpr'))} | "
                         f"{_f(p99.get('f1'))} | {_f(p99.get('fpr'))} |")
        per = metrics.get("columns", {}).get("oas", {}).get("per_attack") or {}
        if per:
            lines += ["", "Per attack class (oas AUROC): " + ", ".join(
                f"{k} {_f(v.get('auroc') if isinstance(v, dict) else v, 3)}" for k, v in per.items())]
    lines += ["", "## Limits",
              ("- Thresholds hold for traffic like the benign flows they were read from; on another "
              "site calibrate first (`--calibrate`), or expect a different false-alarm rate."),
              ("- A flow is scored on its first T packets and its 20 flow features; payloads are "
              "never read."), ""]
    return "\n".join(lines)
