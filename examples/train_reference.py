"""Reference trainer: a small PyTorch model trained on governed data, its run recorded.

It reads ``patient_notes`` through the govern connector (Arrow Flight), so it only ever sees
the rows and columns the gateway's policy allows for purpose ``training``, and the gateway
records, for the run id, exactly which rows it streamed. The model predicts a note's diagnosis
code from the note's words (hashed bag of words -> a two-layer MLP); rows whose row id is a
multiple of 5 are held out for accuracy.

Two strategies (docs/unlearning.md):

- ``--strategy full`` (default): one model, ``<output>/model.pt``.
- ``--strategy sisa --shards K``: one model per row-id shard (SISA, Bourtoule et al. 2021).
  Shard k reads only rows with row id = k (mod K), under its own run id
  ``<run>.shard-<k>``, so provenance knows which shard held which rows; it is written to
  ``<output>/shard-<k>.pt``. Predictions average the shard models' probabilities.
  ``--only-shards 1,3 --shard-tag u-...`` retrains those shards alone (under new shard run
  ids) and replaces their files in place; the other shard files are not touched.

With ``--output`` the trainer registers its recipe with the gateway (Flight action
``recipe.put``), so that an erasure request can retrain it: a fresh run before it reads, a
repair (``--replaces`` or ``--only-shards``) once its model is written. It needs nothing
but the Flight URL and a token (``GOVERN_FLIGHT_URL``, ``GOVERN_TOKEN``, as retrain jobs get
them) and assumes nothing of its working directory.

Against a running gateway (``make run``)::

    TOKEN=$(govern token create --subject demo-trainer --role trainer)
    python examples/train_reference.py --token "$TOKEN" --api-url http://127.0.0.1:8000 \
        --strategy sisa --shards 4 --output /tmp/ref-model

Self-contained, with a throwaway gateway and the demo in a temporary GOVERN_HOME::

    python examples/train_reference.py --demo

It prints one JSON line: the run id, the loss per epoch, held-out accuracy and, with
``--api-url`` (or ``--demo``), what ``GET /v1/runs/{run_id}`` says the run read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import govern_connect
import pyarrow as pa
import torch
from torch import nn
from torch.utils.data import DataLoader

DATASET = "patient_notes"
COLUMNS = ["note", "diagnosis_code", "age"]
# The demo's diagnosis codes: the label vocabulary of this reference model.
LABELS = ["E11.9", "I10", "J45.909", "F32.A", "M54.5", "K21.9", "C50.911", "N39.0"]
FEATURES = 512
MINIBATCH = 64
_WORD = re.compile(r"[a-z]+")


def featurize(batch: pa.RecordBatch) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One Arrow batch -> minibatches of (features, labels, held-out mask).

    Words are hashed with CRC32 (stable across processes, unlike ``hash``), so DataLoader
    workers agree on the feature space.
    """
    notes = batch.column("note").to_pylist()
    codes = batch.column("diagnosis_code").to_pylist()
    ages = batch.column("age").to_pylist()
    row_ids = batch.column("_row_id").to_pylist()
    for start in range(0, len(notes), MINIBATCH):
        end = min(start + MINIBATCH, len(notes))
        x = torch.zeros(end - start, FEATURES + 1)
        for i, note in enumerate(notes[start:end]):
            for word in _WORD.findall((note or "").lower()):
                x[i, zlib.crc32(word.encode()) % FEATURES] += 1.0
        x[:, FEATURES] = torch.tensor([(a or 0) / 100.0 for a in ages[start:end]])
        y = torch.tensor([LABELS.index(c) if c in LABELS else 0 for c in codes[start:end]])
        held_out = torch.tensor([r % 5 == 0 for r in row_ids[start:end]])
        yield x, y, held_out


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES + 1, 64), nn.ReLU(), nn.Linear(64, len(LABELS)))


def shard_run_id(run_id: str, shard: int, tag: str | None = None) -> str:
    """The run id shard ``shard`` reads under (as ``govern.unlearning.recipes`` names it)."""
    return f"{run_id}.shard-{shard}" + (f".{tag}" if tag else "")


def train(
    client: govern_connect.Client,
    run_id: str,
    *,
    epochs: int,
    workers: int,
    lr: float,
    seed: int,
    dataset: str = DATASET,
    version: int | None = None,
    columns: Sequence[str] = COLUMNS,
    purpose: str = "training",
    output: Path | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """Strategy ``full``: one model over every row the gateway serves.

    With ``stream`` the rows are streamed through a DataLoader on every epoch (``workers``
    worker processes, each reading its own slice of the run), for data larger than memory;
    without, they are read once and trained on exactly as one SISA shard is, so the two
    strategies compare like for like.
    """
    started = time.perf_counter()
    if not stream:
        batches = read_shard(
            client,
            dataset,
            purpose=purpose,
            run_id=run_id,
            version=version,
            columns=columns,
            shard=0,
            shards=1,
        )
        one, history = fit(batches, epochs=epochs, lr=lr, seed=seed)
        held = [(x[h], y[h]) for x, y, h in batches if h.any()]
        right = sum(int((predict([one], x) == y).sum()) for x, y in held)
        total_held = sum(len(y) for _, y in held)
        if output is not None:
            save_model(one, output / "model.pt")
        return {
            "run_id": run_id,
            "dataset": dataset,
            "strategy": "full",
            "epochs": epochs,
            "loss": [round(v, 4) for v in history],
            "held_out_accuracy": round(right / total_held, 4) if total_held else None,
            "held_out_rows": total_held,
            "rows_seen": sum(len(y) for _, y, _ in batches),
            "train_seconds": round(time.perf_counter() - started, 3),
        }
    torch.manual_seed(seed)
    data = client.torch_dataset(
        dataset,
        purpose=purpose,
        run_id=run_id,
        columns=list(columns),
        version=version,
        transform=featurize,
    )
    loader = DataLoader(
        data,
        batch_size=None,  # featurize already yields minibatches
        num_workers=workers,
        multiprocessing_context="spawn" if workers else None,
    )
    net = model()
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    losses: list[float] = []
    rows = 0
    for _ in range(epochs):
        total, count = 0.0, 0
        net.train()
        for x, y, held_out in loader:
            keep = ~held_out
            rows += len(y)
            if not keep.any():
                continue
            optimiser.zero_grad()
            loss = loss_fn(net(x[keep]), y[keep])
            loss.backward()
            optimiser.step()
            total += loss.item() * int(keep.sum())
            count += int(keep.sum())
        losses.append(total / max(count, 1))
    correct = seen = 0
    net.eval()
    with torch.no_grad():
        for x, y, held_out in loader:
            if held_out.any():
                predicted = net(x[held_out]).argmax(dim=1)
                correct += int((predicted == y[held_out]).sum())
                seen += int(held_out.sum())
    if output is not None:
        save_model(net, output / "model.pt")
    return {
        "run_id": run_id,
        "dataset": dataset,
        "strategy": "full",
        "epochs": epochs,
        "loss": [round(v, 4) for v in losses],
        "held_out_accuracy": round(correct / seen, 4) if seen else None,
        "held_out_rows": seen,
        "rows_seen": rows,
        "train_seconds": round(time.perf_counter() - started, 3),
    }


Minibatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def read_shard(
    client: govern_connect.Client,
    dataset: str,
    *,
    purpose: str,
    run_id: str,
    version: int | None,
    columns: Sequence[str],
    shard: int,
    shards: int,
) -> list[Minibatch]:
    """One shard's rows as minibatches, in row-id order: the gateway streams row-id ranges in
    parallel, so sorting makes a shard's model depend only on its rows and its seed."""
    table = client.read(
        dataset,
        purpose=purpose,
        run_id=run_id,
        columns=list(columns),
        version=version,
        shard=(shard, shards),
    )
    table = table.sort_by("_row_id").combine_chunks()
    return [mb for batch in table.to_batches() for mb in featurize(batch)]


def fit(
    batches: Sequence[Minibatch], *, epochs: int, lr: float, seed: int
) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(seed)
    net = model()
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    losses: list[float] = []
    for _ in range(epochs):
        total, count = 0.0, 0
        net.train()
        for x, y, held_out in batches:
            keep = ~held_out
            if not keep.any():
                continue
            optimiser.zero_grad()
            loss = loss_fn(net(x[keep]), y[keep])
            loss.backward()
            optimiser.step()
            total += loss.item() * int(keep.sum())
            count += int(keep.sum())
        losses.append(total / max(count, 1))
    net.eval()
    return net, losses


def save_model(net: nn.Module, path: Path) -> None:
    """Write, then rename: a reader (or a crash) never sees half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)


def load_model(path: Path) -> nn.Module:
    net = model()
    net.load_state_dict(torch.load(path, weights_only=True))
    net.eval()
    return net


def predict(models: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """SISA aggregation: the mean of the shard models' class probabilities, then argmax."""
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in models]).mean(dim=0)
    return probs.argmax(dim=1)


def train_sisa(
    client: govern_connect.Client,
    run_id: str,
    *,
    shards: int,
    only: Sequence[int],
    tag: str | None,
    epochs: int,
    lr: float,
    seed: int,
    output: Path,
    dataset: str = DATASET,
    version: int,
    columns: Sequence[str] = COLUMNS,
    purpose: str = "training",
) -> dict[str, Any]:
    """Strategy ``sisa``: train shards ``only`` (all of them for a fresh run), each from its
    own read under its own run id, and replace their model files; then evaluate the whole
    ensemble on the held-out rows of the shards read."""
    started = time.perf_counter()
    losses: dict[int, list[float]] = {}
    held: list[Minibatch] = []
    runs: dict[int, str] = {}
    rows = 0
    for k in sorted(only):
        runs[k] = shard_run_id(run_id, k, tag)
        batches = read_shard(
            client,
            dataset,
            purpose=purpose,
            run_id=runs[k],
            version=version,
            columns=columns,
            shard=k,
            shards=shards,
        )
        rows += sum(len(y) for _, y, _ in batches)
        # The shard's seed does not depend on which other shards train with it, so a shard
        # retrained alone is the model a full SISA retrain would have made.
        net, losses[k] = fit(batches, epochs=epochs, lr=lr, seed=seed * 100_003 + k)
        save_model(net, output / f"shard-{k}.pt")
        held.extend((x[h], y[h], h[h]) for x, y, h in batches if h.any())
    models = [load_model(output / f"shard-{k}.pt") for k in range(shards)]
    correct = sum(int((predict(models, x) == y).sum()) for x, y, _ in held)
    seen = sum(len(y) for _, y, _ in held)
    return {
        "run_id": run_id,
        "dataset": dataset,
        "strategy": "sisa",
        "shards": shards,
        "trained_shards": sorted(only),
        "shard_runs": {str(k): r for k, r in runs.items()},
        "epochs": epochs,
        "loss": {str(k): [round(v, 4) for v in ls] for k, ls in losses.items()},
        "held_out_accuracy": round(correct / seen, 4) if seen else None,
        "held_out_rows": seen,
        "rows_seen": rows,
        "train_seconds": round(time.perf_counter() - started, 3),
    }


def run_record(api_url: str, token: str, run_id: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own gateway
        f"{api_url.rstrip('/')}/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.load(response)


def _demo_gateway(stack: ExitStack) -> tuple[str, str, str]:
    """A throwaway gateway with the demo, serving Flight and REST on free loopback ports."""
    import threading

    import uvicorn

    from govern.api import create_app
    from govern.demo import load_demo
    from govern.flight import FlightServer
    from govern.gateway import Gateway
    from govern.settings import load_settings
    from govern.store.migrate import upgrade

    home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="govern-demo-")))
    settings = load_settings(home=home, config=home / "none.toml", chain_backend="none")
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    stack.callback(gateway.close)
    load_demo(gateway, scale=0.2)
    flight = FlightServer(gateway)
    stack.callback(flight.stop)
    config = uvicorn.Config(
        create_app(gateway, close_on_shutdown=False), host="127.0.0.1", port=0, log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stack.callback(thread.join, 10)
    stack.callback(setattr, server, "should_exit", True)
    while not server.started:
        thread.join(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    # Issued as `govern token create` would: logged as the local operator.
    token = gateway.commands.issue_token("demo-trainer", "trainer", settings.cli_actor).token
    return flight.location, token, f"http://127.0.0.1:{port}"


def _dataset_arg(value: str) -> tuple[str, int | None]:
    name, _, version = value.partition("@")
    return name, int(version) if version else None


def _columns_arg(value: str) -> list[str]:
    # "dataset=a,b" (the recipe's form) or just "a,b"
    return [c for c in value.partition("=")[2 if "=" in value else 0].split(",") if c]


def _shards_arg(value: str) -> list[int]:
    return sorted({int(k) for k in value.split(",") if k.strip()})


def recipe_of(args: argparse.Namespace, version: int, output: Path) -> dict[str, Any]:
    """What this run is, for ``recipe.put`` (docs/unlearning.md)."""
    return {
        "trainer": args.trainer_name,
        "datasets": [{"name": args.dataset[0], "version": version, "columns": args.columns}],
        "purpose": args.purpose,
        "strategy": args.strategy,
        "shards": args.shards if args.strategy == "sisa" else 1,
        "epochs": args.epochs,
        "seed": args.seed,
        "lr": args.lr,
        "output": str(output),
        "replaces": args.replaces,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--flight-url", default=os.environ.get("GOVERN_FLIGHT_URL", "grpc://127.0.0.1:8815")
    )
    parser.add_argument("--token", default=os.environ.get("GOVERN_TOKEN"))
    parser.add_argument("--api-url", help="REST base URL, to print the recorded run")
    parser.add_argument("--run-id", default=f"reference-{secrets.token_hex(4)}")
    parser.add_argument(
        "--dataset", type=_dataset_arg, default=(DATASET, None), help="NAME[@VERSION]"
    )
    parser.add_argument("--columns", type=_columns_arg, default=COLUMNS, help="[NAME=]COL,COL")
    parser.add_argument("--purpose", default="training")
    parser.add_argument("--strategy", choices=["full", "sisa"], default="full")
    parser.add_argument("--shards", type=int, default=4, help="sisa: number of shard models")
    parser.add_argument(
        "--only-shards", type=_shards_arg, help="sisa: retrain these shards (e.g. 1,3) only"
    )
    parser.add_argument("--shard-tag", help="sisa: suffix of the retrained shards' run ids")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--stream", action="store_true", help="full: stream every epoch through a DataLoader"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="with --stream: DataLoader worker processes"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (one suits this small model)"
    )
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="model directory; registers the recipe")
    parser.add_argument("--replaces", help="the run this one retrains (an erasure's job)")
    parser.add_argument(
        "--trainer-name",
        default="examples/train_reference.py",
        help="how the recipe names this script (relative to the jobs' working directory)",
    )
    parser.add_argument("--no-recipe", action="store_true", help="do not register a recipe")
    parser.add_argument("--demo", action="store_true", help="serve a throwaway demo gateway")
    args = parser.parse_args(argv)
    if args.strategy == "sisa":
        if not 1 <= args.shards <= 256:
            parser.error("--shards must be 1-256")
        if args.output is None:
            parser.error("--strategy sisa keeps one model file per shard: --output is required")
        if args.only_shards and not all(0 <= k < args.shards for k in args.only_shards):
            parser.error("--only-shards must name shards below --shards")
    elif args.only_shards or args.shard_tag:
        parser.error("--only-shards and --shard-tag need --strategy sisa")
    dataset, version = args.dataset
    torch.set_num_threads(max(1, args.threads))
    output = args.output.resolve() if args.output is not None else None
    register = output is not None and not args.no_recipe
    # A fresh run registers before it reads (a crash still leaves it retrainable); a repair
    # once its model is written (until then the model it repairs is the current one).
    repair = bool(args.replaces or args.only_shards)
    with ExitStack() as stack:
        url, token, api = args.flight_url, args.token, args.api_url
        if args.demo:
            url, token, api = _demo_gateway(stack)
        if not token:
            parser.error("a bearer token is required (--token or GOVERN_TOKEN)")
        with govern_connect.connect(url, token) as client:
            if version is None:
                version = client.resolve_version(
                    dataset, purpose=args.purpose, run_id=args.run_id, columns=args.columns
                )
            if register and not repair:
                assert output is not None
                client.put_recipe(args.run_id, recipe_of(args, version, output))
            if args.strategy == "sisa":
                assert output is not None
                result = train_sisa(
                    client,
                    args.run_id,
                    shards=args.shards,
                    only=args.only_shards or range(args.shards),
                    tag=args.shard_tag,
                    epochs=args.epochs,
                    lr=args.lr,
                    seed=args.seed,
                    output=output,
                    dataset=dataset,
                    version=version,
                    columns=args.columns,
                    purpose=args.purpose,
                )
            else:
                result = train(
                    client,
                    args.run_id,
                    epochs=args.epochs,
                    workers=args.workers,
                    lr=args.lr,
                    seed=args.seed,
                    dataset=dataset,
                    version=version,
                    columns=args.columns,
                    purpose=args.purpose,
                    output=output,
                    stream=args.stream or args.workers > 0,
                )
            if register and repair:
                assert output is not None
                if args.only_shards:
                    # Only the retrained shards change: keep the rest of the stored recipe.
                    current = client.get_recipe(args.run_id)["recipe"]
                    shard_runs = list(current["shard_runs"])
                    for k, r in result["shard_runs"].items():
                        shard_runs[int(k)] = r
                    client.put_recipe(args.run_id, {**current, "shard_runs": shard_runs})
                else:
                    client.put_recipe(args.run_id, recipe_of(args, version, output))
            result["version"] = version
            result["output"] = str(output) if output is not None else None
            result["recipe"] = register
        if api:
            result["recorded"] = run_record(api, token, args.run_id)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
