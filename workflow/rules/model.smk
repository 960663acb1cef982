# Models: JANUS (train, then score every target) and the baselines (fit on the source and
# score every target in one job), all on the same splits.


rule train:
    input:
        stats="data/{dataset}/extract_stats.json",
        features="data/{dataset}/flow_features.parquet",
        splits="data/{dataset}/splits/seed{seed}.npz",
    output:
        model="runs/{jdet}/{dataset}/seed{seed}_sigma{sigma}/model.pt",
        loss="runs/{jdet}/{dataset}/seed{seed}_sigma{sigma}/loss.csv",
        curve=report(
            "runs/{jdet}/{dataset}/seed{seed}_sigma{sigma}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory="{jdet}",
            labels={
                "dataset": "{dataset}",
                "seed": "{seed}",
                "sigma": "{sigma}",
            },
        ),
    log:
        "logs/train/{jdet}/{dataset}/seed{seed}_sigma{sigma}.log",
    benchmark:
        "logs/benchmarks/train/{jdet}/{dataset}/seed{seed}_sigma{sigma}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=gpu_claim,
    params:
        data=data_dir,
        out=out_dir,
        max_packets=config["extract"]["max_packets"],
        model=MODEL_FLAGS,
        lambda_disc=lambda_disc,
        train=TRAIN_FLAGS,
        device=config["train"]["device"],
        janus=JANUS,
    shell:
        "python -m janus.train --data {params.data} --splits {input.splits}"
        " --seed {wildcards.seed} --out {params.out} --max-packets {params.max_packets}"
        " {params.model} --sigma {wildcards.sigma} --lambda-disc {params.lambda_disc}"
        " {params.train} --device {params.device} --threads {threads} > {log} 2>&1"


rule score:
    input:
        models=janus_models,
        stats=target_stats,
        features=target_features,
        splits=target_splits,
    output:
        scores=per_target("results/scores/{jdet}/{source}/{target}/seed{seed}.parquet"),
    log:
        "logs/score/{jdet}/{source}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/score/{jdet}/{source}/seed{seed}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: res("score", "threads")
    resources:
        mem_mb=res("score", "mem_mb"),
        runtime=res("score", "runtime"),
        gpu=gpu_claim,
    params:
        checkpoints=janus_checkpoints,
        data=target_dirs,
        mode=config["score"]["mode"],
        steps=config["score"]["steps"],
        solver=config["score"]["solver"],
        ode_flags=config["score"]["ode_flags"],
        extended=EXTENDED_FLAGS,
        device=config["train"]["device"],
        janus=JANUS,
    shell:
        "python -m janus.score --checkpoint {params.checkpoints} --data {params.data}"
        " --splits {input.splits} --out {output.scores} --mode {params.mode}"
        " --steps {params.steps} --solver {params.solver} --ode-flags {params.ode_flags}"
        " {params.extended} --device {params.device} --threads {threads} > {log} 2>&1"


rule baseline:
    input:
        features="data/{source}/flow_features.parquet",
        splits="data/{source}/splits/seed{seed}.npz",
        target_features=target_features,
        target_splits=target_splits,
        packets=baseline_packets,
    output:
        model="runs/{baseline}/{source}/seed{seed}/detector.json",
        scores=per_target(
            "results/scores/{baseline}/{source}/{target}/seed{seed}.parquet"
        ),
    log:
        "logs/baseline/{baseline}/{source}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/baseline/{baseline}/{source}/seed{seed}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: res("baseline", "threads")
    resources:
        mem_mb=res("baseline", "mem_mb"),
        runtime=res("baseline", "runtime"),
    params:
        data=source_dir,
        out=out_dir,
        hyper=baseline_flags,
        targets=target_dirs,
        janus=JANUS,
    shell:
        "python -m janus.baselines run --detector {wildcards.baseline} --data {params.data}"
        " --splits {input.splits} --seed {wildcards.seed} --out {params.out} {params.hyper}"
        " --score-data {params.targets} --score-splits {input.target_splits}"
        " --score-out {output.scores} --threads {threads} > {log} 2>&1"
