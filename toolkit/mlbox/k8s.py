"""`mlbox k8s`: Kubernetes manifests that run benchmark matrices of published images.

mlbox applies nothing: `manifests()` is a pure function of the images (each pinned by the
digest its publish record holds) and the options, and `kubectl apply` does the rest.

Per image, an Indexed Job: completion index i runs cell i of the matrix (scenarios x
settings). Every pod gets the same command line, `mlbox-bench @/etc/mlbox/matrix/$(INDEX).args
BENCH_FLAGS...`; the ConfigMap holds each cell's arguments (mlbox-bench reads @FILE as its
lines), so no shell stands between Kubernetes and the harness. Results go to a volume
claim, one directory per cell: /results/RUN/IMAGE/INDEX/, with result.json, LoadGen's logs
and mlbox-run.json (what ran, written by an init container) as `mlbox run` leaves them, so
`mlbox results` reads a copy of the claim (the collect Pod serves it to `kubectl cp`).

Pods run as the image's user with a read-only root file system, no privilege escalation,
no capabilities, the runtime's seccomp profile and no service account token; a
NetworkPolicy denies them all traffic (a benchmark needs none).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlbox import layout
from mlbox.errors import RecordError, quote
from mlbox.publish import Registry, list_field
from mlbox.run import RUN_RECORD  # the record `mlbox results` reads beside result.json
from mlbox.spec import ImageSpec

log = logging.getLogger(__name__)

MATRIX_DIR = "/etc/mlbox/matrix"
INDEX_VARIABLE = "COMPLETION_INDEX"  # not MLBOX_*: mlbox-bench refuses MLBOX_ names it does not know
COLLECT_SECONDS = 3600
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_DOCKER_SIZE = re.compile(r"^([0-9]+)([bkmg])$", re.IGNORECASE)  # `mlbox run --shm-size 2g`
_DIGEST_REFERENCE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
# Set per cell by mlbox itself: a bench flag may not set them too.
_PER_CELL = ("output_dir",)


class MatrixError(ValueError):
    """A matrix or bench flag that mlbox-bench would refuse (a usage error)."""


@dataclass(frozen=True)
class Published:
    """An image of the selection as its newest publish record for the registry has it."""

    spec: ImageSpec
    tag: str  # the registry tag, for people
    reference: str  # repository@sha256:..., what runs
    image_id: str | None


@dataclass(frozen=True)
class Options:
    run: str  # DNS label: names the claim, the ConfigMaps, the policy and the results directory
    scenarios: tuple[str, ...] = ()
    matrix: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (mlbox-bench option, values)
    bench_args: tuple[str, ...] = ()
    namespace: str | None = None
    parallelism: int = 1  # pods of one Job at a time: benchmarks that share a node disturb each other
    gpus_per_pod: int = 1
    cpu: str | None = None
    memory: str | None = None
    shm_size: str = "2Gi"
    storage: str = "5Gi"
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    pull_secret: str | None = None  # a Secret the user made (kubectl create secret docker-registry)


def find_published(
    specs: Sequence[ImageSpec], records: Sequence[dict[str, Any]], registry: Registry
) -> list[Published]:
    """Each image's newest publish record for ``registry``; refuses the selection, naming
    every image that has none, since a Job must pin a digest the registry really holds."""
    where = f"{registry.host}/{registry.namespace}"
    found, missing = [], []
    for spec in specs:
        mine = [
            r
            for r in records
            if r.get("image") == spec.tag
            and r.get("registry") == where
            and any(isinstance(ref, str) and _DIGEST_REFERENCE.match(ref) for ref in list_field(r, "references"))
        ]
        if not mine:
            missing.append(spec.tag)
            continue
        newest = mine[-1]
        reference = next(ref for ref in newest["references"] if isinstance(ref, str) and _DIGEST_REFERENCE.match(ref))
        tags = [t for t in list_field(newest, "tags") if isinstance(t, str)] or [reference]
        image_id = newest.get("image_id")
        if newest.get("verified") == "metadata-only":
            log.warning(
                "%s: its digest comes from bake's metadata and was not checked against the registry "
                "(run `mlbox publish-record` again where the registry is reachable)",
                reference,
            )
        found.append(Published(spec, tags[0], reference, image_id if isinstance(image_id, str) else None))
    if missing:
        msg = f"not published to {where}: {', '.join(missing)} (a Job runs images pinned by their pushed digest)"
        hint = (
            f"push them: `mlbox push ... --registry {where}`, or after `docker buildx bake --push "
            f"--metadata-file M.json`, `mlbox publish-record M.json --registry {where}`"
        )
        raise RecordError(msg, hint=hint)
    return found


def check_names(opts: Options) -> None:
    if not _DNS_LABEL.match(opts.run) or len(opts.run) > 30:
        msg = f"run name {opts.run!r}: lower-case letters, digits and '-', at most 30 characters"
        raise MatrixError(msg)
    for what, name in (("namespace", opts.namespace), ("pull secret", opts.pull_secret)):
        if name is not None and (not _DNS_LABEL.match(name) or len(name) > 63):
            msg = f"{what} {name!r} is not a Kubernetes name (lower-case letters, digits and '-')"
            raise MatrixError(msg)
    for what, value in (("cpu", opts.cpu), ("memory", opts.memory), ("storage", opts.storage)):
        if value is not None and not _QUANTITY.match(value):
            msg = f"--{what} {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)"
            raise MatrixError(msg)


def shm_quantity(size: str) -> str:
    """`2g` (Docker's size, as `mlbox run --shm-size` takes it) or `2Gi` -> a Kubernetes quantity."""
    docker = _DOCKER_SIZE.match(size)
    if docker:
        number, unit = docker.groups()
        return number + {"b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[unit.lower()]
    if not _QUANTITY.match(size):
        msg = f"--shm-size {size!r} is neither a Docker size (2g) nor a Kubernetes quantity (2Gi)"
        raise MatrixError(msg)
    return size


def cells(opts: Options) -> list[list[str]]:
    """The matrix: one mlbox-bench argument list per cell, scenarios outermost, in order.
    Every value is checked by mlbox-bench's own parser for its option."""
    from mlbox_bench.settings import BY_NAME, SettingsError

    axes: list[list[list[str]]] = []
    if opts.scenarios:
        axes.append([["--scenario", _parsed("scenario", s)] for s in opts.scenarios])
    for name, values in opts.matrix:
        option = BY_NAME.get(name.replace("-", "_"))
        if option is None or option.is_flag or option.name in ("scenario", *_PER_CELL):
            msg = f"--matrix {name}: not an mlbox-bench option that takes a value (or one mlbox sets per cell)"
            raise MatrixError(msg)
        for v in values:  # a pod reads its cell from an args file, one argument per line
            if not v.isprintable():
                msg = (
                    f"--matrix {name}: {quote(v)} has a control character "
                    "(a newline would start another argument in the pod's args file)"
                )
                raise MatrixError(msg)
        try:
            axes.append([[option.all_flags[0], str(option.parse(v))] for v in values])
        except SettingsError as err:
            msg = f"--matrix {name}: {err}"
            raise MatrixError(msg) from None
    _check_bench_args(opts)
    return [[arg for part in combination for arg in part] for combination in itertools.product(*axes)]


def _parsed(name: str, value: str) -> str:
    from mlbox_bench.settings import BY_NAME, SettingsError

    try:
        return str(BY_NAME[name].parse(value))
    except SettingsError as err:
        msg = f"--{name} {value}: {err}"
        raise MatrixError(msg) from None


def _check_bench_args(opts: Options) -> None:
    """Flags after `--` reach every pod: refuse what mlbox-bench would refuse there, and
    what would override the matrix (a cell would not run what its index says)."""
    from mlbox_bench.settings import BY_NAME, SettingsError, build_parser

    if any(arg.startswith("@") for arg in opts.bench_args):
        msg = "@FILE arguments: mlbox gives each cell its own; pass flags after `--`"
        raise MatrixError(msg)
    parser = build_parser()
    parser.exit_on_error = False
    try:
        given, unknown = parser.parse_known_args(list(opts.bench_args))
    except argparse.ArgumentError as err:
        msg = f"bench flags: {err}"
        raise MatrixError(msg) from None
    if unknown:
        msg = f"bench flags: mlbox-bench does not know {' '.join(unknown)}"
        raise MatrixError(msg)
    varied = {name.replace("-", "_") for name, _ in opts.matrix} | ({"scenario"} if opts.scenarios else set())
    for name, value in vars(given).items():
        if name in varied or name in _PER_CELL:
            msg = f"bench flags set {BY_NAME[name].all_flags[0]}, which mlbox sets per cell of the matrix"
            raise MatrixError(msg)
        if name in BY_NAME and not BY_NAME[name].is_flag:
            try:
                BY_NAME[name].parse(value)
            except SettingsError as err:
                msg = f"bench flags: {BY_NAME[name].all_flags[0]} {value}: {err}"
                raise MatrixError(msg) from None


def dns_name(*parts: str, limit: int = 52) -> str:
    """A DNS label from ``parts``; too long, it is cut and keeps a hash of the whole. 52: an
    Indexed Job's pods are named JOB-INDEX-xxxxx, their host names JOB-INDEX (63 at most)."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return name[: limit - 7].rstrip("-") + "-" + digest


def manifests(images: Sequence[Published], opts: Options) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(what runs the benchmarks, what serves their results for `kubectl cp`)."""
    check_names(opts)
    matrix = cells(opts)
    shm = shm_quantity(opts.shm_size)
    claim = dns_name("mlbox", opts.run, "results")
    run_labels = {"app.kubernetes.io/name": "mlbox", "mlbox/run": opts.run}
    docs: list[dict[str, Any]] = [_claim(claim, opts, run_labels), _isolation(opts, run_labels)]
    for image in images:
        docs += _job(image, matrix, claim, shm, opts, run_labels)
    collect = _collect_pod(images[0], claim, opts, run_labels)
    return docs, [collect]


def to_yaml(documents: Sequence[dict[str, Any]]) -> str:
    """YAML for kubectl and for people: multi-line strings (a cell's arguments, its run
    record) as literal blocks, and no anchors where two places hold equal values."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump_all(documents, Dumper=Dumper, sort_keys=False)


def _meta(name: str, opts: Options, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta | {"labels": dict(labels)} | extra


def _claim(name: str, opts: Options, labels: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": [opts.access_mode], "resources": {"requests": {"storage": opts.storage}}}
    if opts.storage_class:
        spec["storageClassName"] = opts.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(name, opts, labels), "spec": spec}


def _isolation(opts: Options, labels: dict[str, str]) -> dict[str, Any]:
    """No ingress, no egress, for every pod of the run: `--network none`, as far as the
    cluster's network plugin enforces NetworkPolicy. `kubectl cp` goes through the API
    server and the kubelet, not the pod network."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(dns_name("mlbox", opts.run, "isolated"), opts, labels),
        "spec": {"podSelector": {"matchLabels": {"mlbox/run": opts.run}}, "policyTypes": ["Ingress", "Egress"]},
    }


def _pod_basics(opts: Options) -> dict[str, Any]:
    """What every pod of the run has: no restarts, no API access, the image's user."""
    basics: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
    }
    if opts.pull_secret:
        basics["imagePullSecrets"] = [{"name": opts.pull_secret}]
    return basics


def _pod_security() -> dict[str, Any]:
    uid = layout.IMAGE_UID
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,  # the claim's root becomes group-writable for the image's user
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _index_env() -> dict[str, Any]:
    annotation = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    return {"name": INDEX_VARIABLE, "valueFrom": {"fieldRef": {"fieldPath": annotation}}}


def _job(
    image: Published, matrix: list[list[str]], claim: str, shm: str, opts: Options, run_labels: dict[str, str]
) -> list[dict[str, Any]]:
    spec = image.spec
    short = image.tag.rpartition(":")[2]
    name = dns_name("mlbox", opts.run, short)
    labels = run_labels | {"app.kubernetes.io/component": "benchmark", "mlbox/image": dns_name(short, limit=63)}
    results = f"{layout.RESULTS_DIR}/{opts.run}/{short}"
    gpus = spec.device == "cuda"
    data = {}
    for i, cell in enumerate(matrix):
        args = [*cell, "--output-dir", f"{results}/{i}"]
        data[f"{i}.args"] = "".join(f"{arg}\n" for arg in args)
        data[f"{i}.run.json"] = json.dumps(_run_record(image, [*args, *opts.bench_args], gpus, name, i), indent=2)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, opts, labels), "data": data}
    index = f"$({INDEX_VARIABLE})"  # Kubernetes puts the pod's completion index here
    mounts = [
        {"name": "results", "mountPath": layout.RESULTS_DIR},
        {"name": "matrix", "mountPath": MATRIX_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # an emptyDir: the root file system is read-only
    ]
    record = {
        "name": "record",  # mlbox-run.json beside the results, before the benchmark starts
        "image": image.reference,
        "imagePullPolicy": "IfNotPresent",
        "command": ["install", "-D", "-m", "0644", f"{MATRIX_DIR}/{index}.run.json", f"{results}/{index}/{RUN_RECORD}"],
        "env": [_index_env()],
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    benchmark: dict[str, Any] = {
        "name": "benchmark",
        "image": image.reference,
        "imagePullPolicy": "IfNotPresent",
        "args": [f"@{MATRIX_DIR}/{index}.args", *opts.bench_args],
        "env": [_index_env(), {"name": "XDG_CACHE_HOME", "value": "/tmp/cache"}],  # --dataset's .npy cache
        "securityContext": _container_security(),
        "volumeMounts": [*mounts, {"name": "shm", "mountPath": "/dev/shm"}],
    }
    resources = _resources(opts, gpus)
    if resources:
        benchmark["resources"] = resources
    pod: dict[str, Any] = {
        **_pod_basics(opts),
        "initContainers": [record],
        "containers": [benchmark],
        "volumes": [
            {"name": "results", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "matrix", "configMap": {"name": name}},
            {"name": "tmp", "emptyDir": {}},
            # processpool shares samples through /dev/shm; it counts against the memory limit
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        ],
    }
    if gpus:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(name, opts, labels, annotations={"mlbox/tag": image.tag, "mlbox/reference": image.reference}),
        "spec": {
            "completionMode": "Indexed",
            "completions": len(matrix),
            "parallelism": min(opts.parallelism, len(matrix)),
            # Each cell fails alone (an INVALID run exits 4): the others still run.
            "backoffLimitPerIndex": 0,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [config, job]


def _resources(opts: Options, gpus: bool) -> dict[str, Any]:
    """Requests equal to limits: Guaranteed QoS, so a CPU manager may pin whole cores."""
    amounts = {k: v for k, v in (("cpu", opts.cpu), ("memory", opts.memory)) if v is not None}
    if gpus:
        amounts["nvidia.com/gpu"] = str(opts.gpus_per_pod)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _run_record(image: Published, args: list[str], gpus: bool, job: str, index: int) -> dict[str, Any]:
    """mlbox-run.json as `mlbox run` writes it; a pod cannot know when it ran or its exit
    code before it ran, so those stay null (the Job's status has them)."""
    return {
        "image": image.tag,
        "image_id": image.image_id,
        "repo_digests": [image.reference],
        "args": args,
        "network": "none (NetworkPolicy)",
        "gpus": gpus,
        "read_only": True,
        "started": None,
        "finished": None,
        "exit_code": None,
        "kubernetes": {"job": job, "completion_index": index},
    }


def _collect_pod(image: Published, claim: str, opts: Options, run_labels: dict[str, str]) -> dict[str, Any]:
    """A Pod that mounts the claim read-only and waits, for `kubectl cp` (which needs tar in
    the container: the benchmark image has it, and its nodes have the image already)."""
    labels = run_labels | {"app.kubernetes.io/component": "collect"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(dns_name("mlbox", opts.run, "collect"), opts, labels),
        "spec": {
            **_pod_basics(opts),
            "activeDeadlineSeconds": COLLECT_SECONDS,
            "containers": [
                {
                    "name": "collect",
                    "image": image.reference,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", str(COLLECT_SECONDS)],
                    "securityContext": _container_security(),
                    "volumeMounts": [{"name": "results", "mountPath": layout.RESULTS_DIR, "readOnly": True}],
                }
            ],
            "volumes": [{"name": "results", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
        },
    }
