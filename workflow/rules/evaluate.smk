# Aggregation (label-free, fitted on each target's benign calibration flows; the uncalibrated
# column on the source's), the model-free feature-OAS control of the source dataset, and
# metrics of every score column on the target's test flows: one job per (source, seed).


rule evaluate:
    input:
        scores=evaluate_scores,
        labels=target_labels,
        splits=target_splits,
        features="data/{source}/flow_features.parquet",
        source_splits="data/{source}/splits/seed{seed}.npz",
    output:
        agg=per_target(
            "results/agg/{jdet}/{source}/{target}/seed{seed}.parquet",
            jdet=JANUS_DETECTORS,
        ),
        metrics=per_target(
            "results/metrics/{detector}/{source}/{target}/seed{seed}.json",
            detector=DETECTORS,
        ),
        control="results/agg/feature_oas/{source}/{source}/seed{seed}.parquet",
        control_metrics="results/metrics/feature_oas/{source}/{source}/seed{seed}.json",
    log:
        "logs/evaluate/{source}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/evaluate/{source}/seed{seed}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        runs=evaluate_args,
        aggregate=AGGREGATE_FLAGS,
        janus=JANUS,
    shell:
        "python -m janus.evaluate --source {wildcards.source} --seed {wildcards.seed}"
        " {params.aggregate} {params.runs} > {log} 2>&1"
