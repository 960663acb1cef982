# Models: JANUS (train/score/aggregate) and the baselines (train/score), same splits.


rule train:
    input:
        packets="data/{dataset}/packets.npz",
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
    conda:
        "../envs/janus.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=config["resources"]["gpu"],
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
        model=janus_model,
        packets="data/{target}/packets.npz",
        splits="data/{target}/splits/seed{seed}.npz",
    output:
        scores="results/scores/{jdet}/{source}/{target}/seed{seed}.parquet",
    log:
        "logs/score/{jdet}/{source}/{target}/seed{seed}.log",
    conda:
        "../envs/janus.yaml"
    threads: res("score", "threads")
    resources:
        mem_mb=res("score", "mem_mb"),
        runtime=res("score", "runtime"),
        gpu=config["resources"]["gpu"],
    params:
        data=data_dir,
        device=config["train"]["device"],
        janus=JANUS,
    shell:
        "python -m janus.score --checkpoint {input.model} --data {params.data}"
        " --splits {input.splits} --out {output.scores} --device {params.device}"
        " --threads {threads} > {log} 2>&1"


rule aggregate:
    input:
        scores="results/scores/{jdet}/{source}/{target}/seed{seed}.parquet",
        splits="data/{target}/splits/seed{seed}.npz",
    output:
        agg="results/agg/{jdet}/{source}/{target}/seed{seed}.parquet",
    log:
        "logs/aggregate/{jdet}/{source}/{target}/seed{seed}.log",
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        janus=JANUS,
    shell:
        "python -m janus.aggregate --scores {input.scores} --splits {input.splits}"
        " --out {output.agg} > {log} 2>&1"


rule baseline_train:
    input:
        packets="data/{dataset}/packets.npz",
        features="data/{dataset}/flow_features.parquet",
        splits="data/{dataset}/splits/seed{seed}.npz",
    output:
        model="runs/{baseline}/{dataset}/seed{seed}/detector.json",
    log:
        "logs/baseline_train/{baseline}/{dataset}/seed{seed}.log",
    conda:
        "../envs/janus.yaml"
    threads: res("baseline", "threads")
    resources:
        mem_mb=res("baseline", "mem_mb"),
        runtime=res("baseline", "runtime"),
    params:
        data=data_dir,
        out=out_dir,
        janus=JANUS,
    shell:
        "python -m janus.baselines train --detector {wildcards.baseline}"
        " --data {params.data} --splits {input.splits} --seed {wildcards.seed}"
        " --out {params.out} --threads {threads} > {log} 2>&1"


rule baseline_score:
    input:
        model="runs/{baseline}/{source}/seed{seed}/detector.json",
        packets="data/{target}/packets.npz",
        features="data/{target}/flow_features.parquet",
        splits="data/{target}/splits/seed{seed}.npz",
    output:
        scores="results/scores/{baseline}/{source}/{target}/seed{seed}.parquet",
    log:
        "logs/baseline_score/{baseline}/{source}/{target}/seed{seed}.log",
    conda:
        "../envs/janus.yaml"
    threads: res("baseline", "threads")
    resources:
        mem_mb=res("baseline", "mem_mb"),
        runtime=res("baseline", "runtime"),
    params:
        data=data_dir,
        model=model_dir,
        janus=JANUS,
    shell:
        "python -m janus.baselines score --model {params.model} --data {params.data}"
        " --splits {input.splits} --out {output.scores} --threads {threads}"
        " > {log} 2>&1"
