# Tables and figures; every output is also a page of `snakemake --report`.


rule report_tables:
    input:
        metrics=METRICS,
    output:
        cross=report(
            "results/cross_matrix.md",
            caption="../report/cross_matrix.rst",
            category="Tables",
        ),
        within=report(
            "results/within.md", caption="../report/within.rst", category="Tables"
        ),
        thresholded=report(
            "results/thresholded.md",
            caption="../report/thresholded.rst",
            category="Tables",
        ),
        per_attack=report(
            "results/per_attack.md",
            caption="../report/per_attack.rst",
            category="Tables",
        ),
        aggregators=report(
            "results/aggregators.md",
            caption="../report/aggregators.rst",
            category="Tables",
        ),
        baselines=report(
            "results/baselines.md",
            caption="../report/baselines.rst",
            category="Tables",
        ),
        matrix=report(
            "results/figures/cross_matrix.png",
            caption="../report/cross_matrix_png.rst",
            category="Figures",
        ),
    log:
        "logs/report/tables.log",
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        out=out_dir,
        datasets=DATASETS,
        detectors=DETECTORS,
        config_hash=CONFIG_HASH,
        janus=JANUS,
    shell:
        "python -m janus.report --metrics {input.metrics} --out-dir {params.out}"
        " --datasets {params.datasets} --detectors {params.detectors}"
        " --config-hash {params.config_hash} --figures matrix > {log} 2>&1"


rule report_figures:
    input:
        unpack(figure_inputs),
    output:
        roc=report(
            "results/figures/roc_{dataset}.png",
            caption="../report/roc.rst",
            category="Figures",
            subcategory="ROC",
            labels={"dataset": "{dataset}"},
        ),
        hist=report(
            "results/figures/hist_{dataset}.png",
            caption="../report/hist.rst",
            category="Figures",
            subcategory="Score histograms",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/report/figures_{dataset}.log",
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        out=report_root,
        detectors=DETECTORS,
        seed=FIGURE_SEED,
        janus=JANUS,
    shell:
        "python -m janus.report --metrics {input.metrics} --out-dir {params.out}"
        " --datasets {wildcards.dataset} --detectors {params.detectors}"
        " --figure-seed {params.seed} --no-tables --figures datasets > {log} 2>&1"
