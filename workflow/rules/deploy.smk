# Deployable model folders: every seed of a dataset's within-site JANUS run, in one job
# (checkpoint, aggregator and thresholds from the benign validation flows, card).


rule model_folders:
    input:
        models=deploy_checkpoints,
        scores=deploy_scores,
        splits=deploy_splits,
        metrics=deploy_metrics,
        stats="data/{dataset}/extract_stats.json",
    output:
        manifests=deploy_outputs("model.json"),
        aggregators=deploy_outputs("aggregator.json"),
        checkpoints=deploy_outputs("model.pt"),
        cards=deploy_outputs("MODEL_CARD.md"),
    log:
        "logs/models/{dataset}.log",
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        data=deploy_data,
        out=deploy_out,
        seeds=SEEDS,
        target_fpr=config["deploy"]["target_fpr"],
        aggregate=AGGREGATE_FLAGS,
        config_hash=CONFIG_HASH,
        janus=JANUS,
    shell:
        "python -m janus.models --dataset {wildcards.dataset} --data {params.data}"
        " --checkpoint {input.models} --scores {input.scores} --splits {input.splits}"
        " --metrics {input.metrics} --seed {params.seeds} --out {params.out}"
        " --target-fpr {params.target_fpr} --config-hash {params.config_hash}"
        " {params.aggregate} > {log} 2>&1"


rule models:
    input:
        MODEL_FOLDERS,
