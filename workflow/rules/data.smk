# Captures -> the dataset triple, labels and per-seed splits.


rule synth:
    output:
        pcap="data/raw/synth/{site}/capture.pcap",
        csv="data/raw/synth/{site}/GeneratedLabelledFlows.csv",
        meta="data/raw/synth/{site}/site.json",
    log:
        "logs/synth/{site}.log",
    benchmark:
        "logs/benchmarks/synth/{site}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        root=synth_root,
        seed=config["synth"]["seed"],
        scale=config["synth"]["scale"],
        janus=JANUS,
    shell:
        "python -m janus.synth --out {params.root} --seed {params.seed}"
        " --sites {wildcards.site} --scale {params.scale} > {log} 2>&1"


# A checkpoint: the captures it lists are known only once it has run (extract.per_file
# makes one job per listed file).
checkpoint download:
    output:
        captures="data/raw/{dataset}/captures.txt",
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmarks/download/{dataset}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: res("download", "threads")
    resources:
        mem_mb=res("download", "mem_mb"),
        runtime=res("download", "runtime"),
        disk_mb=res("download", "disk_mb"),
    params:
        name=download_name,
        root=out_dir,
        source=download_args,
        janus=JANUS,
    shell:
        "python -m janus.download {params.name} --out {params.root} {params.source}"
        " --captures-list {output.captures} > {log} 2>&1"


rule extract:
    input:
        captures,
    # The packet tensor (packets.npz, or the sharded store packets/ for a large dataset) is
    # not an output: its name depends on the flow count. extract_stats.json, written last,
    # stands for the whole triple.
    output:
        flows="data/{dataset}/flows.parquet",
        features="data/{dataset}/flow_features.parquet",
        stats="data/{dataset}/extract_stats.json",
    log:
        "logs/extract/{dataset}.log",
    benchmark:
        "logs/benchmarks/extract/{dataset}.tsv"
    # The datasets read as one stream (per_file false, or a single capture file).
    wildcard_constraints:
        dataset=STREAMED_RE,
    conda:
        "../envs/janus.yaml"
    threads: res("extract", "threads")
    resources:
        mem_mb=res("extract", "mem_mb"),
        runtime=res("extract", "runtime"),
    params:
        captures=capture_args,
        out=out_dir,
        max_packets=config["extract"]["max_packets"],
        idle=config["extract"]["idle_timeout"],
        active=config["extract"]["active_timeout"],
        store=EXTRACT_FLAGS,
        janus=JANUS,
    shell:
        "python -m janus.extract {params.captures} --out {params.out}"
        " --max-packets {params.max_packets} --idle-timeout {params.idle}"
        " --active-timeout {params.active} {params.store} > {log} 2>&1"


rule extract_part:
    # One capture file of a per_file dataset; its folder goes once the merge has run.
    input:
        capture=part_capture,
    output:
        part=temp(directory("data/{dataset}/parts/{part}")),
    log:
        "logs/extract_part/{dataset}/{part}.log",
    benchmark:
        "logs/benchmarks/extract_part/{dataset}/{part}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: res("extract_part", "threads")
    resources:
        mem_mb=res("extract_part", "mem_mb"),
        runtime=res("extract_part", "runtime"),
    params:
        max_packets=config["extract"]["max_packets"],
        idle=config["extract"]["idle_timeout"],
        active=config["extract"]["active_timeout"],
        store=PART_STORE_FLAGS,
        janus=JANUS,
    shell:
        "python -m janus.extract {input.capture:q} --out {output.part}"
        " --max-packets {params.max_packets} --idle-timeout {params.idle}"
        " --active-timeout {params.active} {params.store} > {log} 2>&1"


# The parts of a per_file dataset, in capture order, joined into its dataset triple.
rule merge:
    input:
        parts=merge_parts,
    output:
        flows="data/{dataset}/flows.parquet",
        features="data/{dataset}/flow_features.parquet",
        stats="data/{dataset}/extract_stats.json",
    log:
        "logs/merge/{dataset}.log",
    benchmark:
        "logs/benchmarks/merge/{dataset}.tsv"
    wildcard_constraints:
        dataset=PER_FILE_RE,
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("merge", "mem_mb"),
        runtime=res("merge", "runtime"),
    params:
        parts=merge_args,
        out=out_dir,
        store=STORE_FLAGS,
        janus=JANUS,
    shell:
        "python -m janus.merge {params.parts} --out {params.out} {params.store}"
        " > {log} 2>&1"


rule labels:
    input:
        flows="data/{dataset}/flows.parquet",
        stats="data/{dataset}/extract_stats.json",
        extra=label_inputs,
    output:
        labels="data/{dataset}/labels.parquet",
    log:
        "logs/labels/{dataset}.log",
    benchmark:
        "logs/benchmarks/labels/{dataset}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: res("labels", "threads")
    resources:
        mem_mb=res("labels", "mem_mb"),
        runtime=res("labels", "runtime"),
    params:
        data=data_dir,
        rule=label_args,
        janus=JANUS,
    shell:
        "python -m janus.labels --data {params.data} {params.rule} > {log} 2>&1"


rule splits:
    input:
        stats="data/{dataset}/extract_stats.json",
        labels="data/{dataset}/labels.parquet",
    output:
        splits="data/{dataset}/splits/seed{seed}.npz",
    log:
        "logs/splits/{dataset}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/splits/{dataset}/seed{seed}.tsv"
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        data=data_dir,
        sizes=SPLIT_FLAGS,
        janus=JANUS,
    shell:
        "python -m janus.splits --data {params.data} --seed {wildcards.seed}"
        " --out {output.splits} {params.sizes} > {log} 2>&1"
