"""What `ncfine-discover` writes besides the figures: discovery.json (every number, with class
names), the headline keys of results.json, and report.md (a verdict, then one table per superclass).

Clusters are numbered 1..k in everything a person reads (report, montages, verdict lines);
discovery.json keeps the 0-based ids of `discover_subclasses` (`cluster`) next to them (`number`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncfine.utils.atomic import atomic_write_text

# A cluster this far (in accuracy) below its superclass is worth a look: hidden stratification.
STRATIFICATION_GAP = 0.10


def discovery_payload(found: dict[str, Any], nearest: dict[int, dict[int, list[int]]], figures: dict[int, str]) -> dict:
    """discovery.json: the analysis result with class names, the images shown, and the settings."""
    cfg, result, hierarchy = found["cfg"], found["result"], found["datamodule"].hierarchy
    has_fine = found["has_fine"]
    superclasses = []
    for entry in result["superclasses"]:
        c = entry["coarse"]
        item = {
            "coarse": c,
            "name": hierarchy.coarse_names[c],
            **{k: v for k, v in entry.items() if k not in ("coarse", "clusters", "scores", "fine")},
            "scores": {str(k): v for k, v in entry["scores"].items()},
            "figure": figures.get(c),
        }
        clusters = []
        for cluster in entry["clusters"]:
            out = {"cluster": cluster["cluster"], "number": cluster["cluster"] + 1, **_without(cluster, "cluster")}
            if "fine_counts" in cluster:
                out["fine_counts"] = {hierarchy.fine_names[f]: n for f, n in cluster["fine_counts"].items()}
            out["nearest_images"] = nearest.get(c, {}).get(cluster["cluster"], [])
            clusters.append(out)
        item["clusters"] = clusters
        if has_fine:
            item["fine"] = {
                **entry["fine"],
                "classes": [hierarchy.fine_names[f] for f in hierarchy.fine_classes_of(c)],
            }
        item["stratification"] = stratification_line(item)
        superclasses.append(item)
    discovery = {
        "source": found["loaded"].source,
        "split": str(cfg.split),
        "layer": str(cfg.layer),
        "num_samples": int(found["features"].h.shape[0]),
        "feature_dim": int(found["features"].h.shape[1]),
        "criterion": result["criterion"],
        "criterion_options": dict(cfg.criterion_options or {}),
        "max_k": result["max_k"],
        "pca_dim": cfg.get("pca_dim"),
        "fine_labels": has_fine,
        # Feature data (the synthetic source) has no pictures to show: the figures are projections only.
        "images": bool(found["datamodule"].is_image),
        "head": found["head_note"],
        "cluster_seconds": round(found["cluster_seconds"], 3),
        "superclasses": superclasses,
    }
    discovery["verdict"] = verdict(discovery)
    return discovery


def _without(mapping: dict, *keys: str) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys and k != "fine_counts"}


def stratification_line(item: dict) -> str | None:
    """'dog: cluster 3 of 4, 212 images, 61% vs 88%': the worst cluster beside its superclass (None
    without the model's accuracy, or with a single cluster)."""
    if item.get("worst_cluster") is None or item["k"] < 2:
        return None
    worst = next(c for c in item["clusters"] if c["cluster"] == item["worst_cluster"])
    return (
        f"{item['name']}: cluster {worst['number']} of {item['k']}, {worst['size']} images, "
        f"{100 * worst['accuracy']:.0f}% vs {100 * item['accuracy']:.0f}%"
    )


def verdict(discovery: dict) -> list[str]:
    """The report's first lines: what was found, against the fine labels where they exist, and the
    clusters the model gets much more wrong than the rest of their class."""
    items = discovery["superclasses"]
    ks = [item["k"] for item in items]
    split = [item["name"] for item in items if item["k"] > 1]
    lines = [
        f"{len(split)} of {len(items)} superclasses split into sub-clusters (k = {', '.join(map(str, ks))}; "
        f"{discovery['criterion']}, k <= {discovery['max_k']})"
    ]
    if discovery["fine_labels"]:
        matched = sum(item["k"] == item["fine"]["true_k"] for item in items)
        ari = sum(item["fine"]["ari"] for item in items) / len(items)
        lines.append(
            f"against the fine labels (not used to find them): k = the number of fine classes in {matched} of "
            f"{len(items)} superclasses; mean ARI {ari:.2f}"
        )
    else:
        lines.append("no fine labels in this data: the clusters are what the network separates, unnamed")
    flagged = [
        item["stratification"] for item in items if item.get("stratification") and _gap(item) >= STRATIFICATION_GAP
    ]
    if flagged:
        lines.append(f"hidden stratification (worst cluster >= {100 * STRATIFICATION_GAP:.0f} points below its class):")
        lines += [f"  {line}" for line in flagged]
    elif any(item.get("accuracy") is not None for item in items):
        lines.append(f"no cluster is {100 * STRATIFICATION_GAP:.0f} points or more below its superclass's accuracy")
    return lines


def _gap(item: dict) -> float:
    worst = next(c for c in item["clusters"] if c["cluster"] == item["worst_cluster"])
    return item["accuracy"] - worst["accuracy"]


def headline_metrics(discovery: dict) -> dict[str, float]:
    """results.json's metrics: `discover/<split>/<coarse id>/{k, true_k, ari, nmi, accuracy,
    worst_accuracy}` per superclass and `discover/<split>/{k_mean, k_match, ari_mean}` over them
    (the fine-label keys only where the data has fine labels)."""
    split = discovery["split"]
    metrics: dict[str, float] = {}
    items = discovery["superclasses"]
    for item in items:
        prefix = f"discover/{split}/{item['coarse']}"
        metrics[f"{prefix}/k"] = float(item["k"])
        if item.get("accuracy") is not None:
            metrics[f"{prefix}/accuracy"] = item["accuracy"]
            worst = next(c for c in item["clusters"] if c["cluster"] == item["worst_cluster"])
            metrics[f"{prefix}/worst_accuracy"] = worst["accuracy"]
        if "fine" in item:
            metrics[f"{prefix}/true_k"] = float(item["fine"]["true_k"])
            metrics[f"{prefix}/ari"] = item["fine"]["ari"]
            metrics[f"{prefix}/nmi"] = item["fine"]["nmi"]
    metrics[f"discover/{split}/k_mean"] = sum(item["k"] for item in items) / len(items)
    if discovery["fine_labels"]:
        metrics[f"discover/{split}/k_match"] = sum(item["k"] == item["fine"]["true_k"] for item in items) / len(items)
        metrics[f"discover/{split}/ari_mean"] = sum(item["fine"]["ari"] for item in items) / len(items)
    return metrics


def write_report(path: str | Path, discovery: dict, results: dict) -> None:
    """report.md: the verdict, then per superclass its scores for every k and a table of its clusters."""
    config = results.get("config", {})
    lines = [
        f"# ncfine-discover: {config.get('backbone')} on {config.get('data')}, {discovery['split']} split",
        "",
        *[f"**{line.strip()}**" if not line.startswith("  ") else f"- {line.strip()}" for line in discovery["verdict"]],
        "",
        f"- model: {discovery['source']}",
        f"- features: layer `{discovery['layer']}` ({discovery['feature_dim']} dims), "
        f"{discovery['num_samples']} {discovery['split']} samples",
        f"- k chosen by `{discovery['criterion']}` among 1..{discovery['max_k']}"
        + (f", on the top {discovery['pca_dim']} principal axes" if discovery.get("pca_dim") else ""),
        f"- accuracy and loss: {discovery['head']}",
        f"- clustering took {discovery['cluster_seconds']} s; status {results.get('status')}, "
        f"{results.get('wall_time_s')} s in all",
        "- clusters are numbered 1..k; each row of a figure shows the images nearest that cluster's centre"
        if discovery["images"]
        else "- clusters are numbered 1..k; this data has no images (feature vectors): the figures show the "
        "2-D projection only",
        "",
    ]
    for item in discovery["superclasses"]:
        lines += _superclass_section(item, discovery["fine_labels"])
    atomic_write_text(path, "\n".join(lines))


def _superclass_section(item: dict, has_fine: bool) -> list[str]:
    head = f"## {item['name']}: k = {item['k']}"
    if has_fine:
        head += f" (fine classes: {item['fine']['true_k']}: {', '.join(item['fine']['classes'])})"
    lines = [head, ""]
    if item.get("note"):
        lines += [f"_{item['note']}_", ""]
    scores = ", ".join(f"k={k}: {'-' if v is None else f'{v:.3f}'}" for k, v in item["scores"].items())
    facts = [f"{item['n']} samples; criterion score per k: {scores}"]
    if item.get("accuracy") is not None:
        facts.append(f"the model's accuracy on the class {100 * item['accuracy']:.1f}%, loss {item['loss']:.3f}")
    if has_fine:
        fine = item["fine"]
        facts.append(
            f"against the fine labels: ARI {fine['ari']:.3f}, NMI {fine['nmi']:.3f}, matched accuracy {fine['acc']:.3f}"
        )
    lines.append("; ".join(facts) + ".")
    lines += ["", "| cluster | images | accuracy | loss | composition |", "| ---: | ---: | ---: | ---: | --- |"]
    for cluster in item["clusters"]:
        acc = "" if cluster.get("accuracy") is None else f"{100 * cluster['accuracy']:.1f}%"
        loss = "" if cluster.get("loss") is None else f"{cluster['loss']:.3f}"
        composition = ", ".join(
            f"{name}: {n}" for name, n in sorted(cluster.get("fine_counts", {}).items(), key=lambda kv: -kv[1])
        )
        worst = " (worst)" if cluster["cluster"] == item.get("worst_cluster") and item["k"] > 1 else ""
        lines.append(f"| {cluster['number']}{worst} | {cluster['size']} | {acc} | {loss} | {composition} |")
    lines.append("")
    if item.get("figure"):
        lines += [f"![{item['name']}]({item['figure']})", ""]
    return lines
