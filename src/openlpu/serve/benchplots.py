"""Histograms of a load test's per-request metrics, one PNG each (`openlpu bench --plots DIR`)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from openlpu.serve.llmperf import RequestMetrics

PLOTTED = {
    "ttft_s": "time to first token (s)",
    "inter_token_latency_s": "inter-token latency, LLMPerf's definition (s)",
    "end_to_end_latency_s": "end-to-end latency (s)",
    "request_output_throughput_token_per_s": "output tokens/s per request",
}


def plot_metrics(results: list[RequestMetrics], folder: Path, title: str) -> list[Path]:
    """One histogram per metric over the successful requests; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    ok = [r for r in results if r.error_code is None]
    written = []
    for metric, label in PLOTTED.items():
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        ax.hist([getattr(r, metric) for r in ok], bins=30, color="#f55036")
        ax.set_xlabel(label)
        ax.set_ylabel("requests")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        path = folder / f"{metric}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written
