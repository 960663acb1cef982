# Metrics of every score column on the target's test flows.


rule evaluate:
    input:
        scores=eval_scores,
        labels="data/{target}/labels.parquet",
        splits="data/{target}/splits/seed{seed}.npz",
    output:
        metrics="results/metrics/{detector}/{source}/{target}/seed{seed}.json",
    log:
        "logs/evaluate/{detector}/{source}/{target}/seed{seed}.log",
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        janus=JANUS,
    shell:
        "python -m janus.evaluate --scores {input.scores} --labels {input.labels}"
        " --splits {input.splits} --out {output.metrics} --detector {wildcards.detector}"
        " --source {wildcards.source} --target {wildcards.target} --seed {wildcards.seed}"
        " > {log} 2>&1"
