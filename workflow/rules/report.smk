# Tables and figures; every output is also a page of `snakemake --report`.


rule report:
    input:
        metrics=METRICS,
        models=MODEL_FILES,
        scores=FIGURE_SCORES,
        data=FIGURE_DATA,
    output:
        # The HTML report shows the HTML copies inline; the markdown tables are the files.
        tables=TABLES,
        cross=report(
            "results/tables/cross_matrix.html",
            caption="../report/cross_matrix.rst",
            category="Tables",
        ),
        within=report(
            "results/tables/within.html",
            caption="../report/within.rst",
            category="Tables",
        ),
        thresholded=report(
            "results/tables/thresholded.html",
            caption="../report/thresholded.rst",
            category="Tables",
        ),
        per_attack=report(
            "results/tables/per_attack.html",
            caption="../report/per_attack.rst",
            category="Tables",
        ),
        aggregators=report(
            "results/tables/aggregators.html",
            caption="../report/aggregators.rst",
            category="Tables",
        ),
        baselines=report(
            "results/tables/baselines.html",
            caption="../report/baselines.rst",
            category="Tables",
        ),
        matrix=report(
            "results/figures/cross_matrix.png",
            caption="../report/cross_matrix_png.rst",
            category="Figures",
        ),
        roc=figure_reports("roc", "../report/roc.rst", "ROC"),
        hist=figure_reports("hist", "../report/hist.rst", "Score histograms"),
        pdfs=FIGURE_PDFS,
    log:
        "logs/report/report.log",
    benchmark:
        "logs/benchmarks/report/report.tsv"
    conda:
        "../envs/janus.yaml"
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    params:
        out=out_dir,
        datasets=DATASETS,
        detectors=REPORT_DETECTORS,
        seed=FIGURE_SEED,
        config_hash=CONFIG_HASH,
        pdf="--pdf" if config["report"]["pdf"] else "",
        janus=JANUS,
    shell:
        "python -m janus.report --metrics {input.metrics} --out-dir {params.out}"
        " --datasets {params.datasets} --detectors {params.detectors}"
        " --figure-seed {params.seed} --config-hash {params.config_hash}"
        " --figures all {params.pdf} > {log} 2>&1"
