"""Reference trainer: a small PyTorch model trained on governed data, its run recorded.

It reads ``patient_notes`` through the govern connector (Arrow Flight), so it only ever sees
the rows and columns the gateway's policy allows for purpose ``training``, and the gateway
records, for the run id, exactly which rows it streamed. The model predicts a note's diagnosis
code from the note's words (hashed bag of words -> a two-layer MLP); rows whose row id is a
multiple of 5 are held out for accuracy.

Against a running gateway (``make run``)::

    TOKEN=$(govern token create --subject demo-trainer --role trainer)
    python examples/train_reference.py --token "$TOKEN" --api-url http://127.0.0.1:8000

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


def train(
    client: govern_connect.Client,
    run_id: str,
    *,
    epochs: int,
    workers: int,
    lr: float,
    seed: int,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    data = client.torch_dataset(
        DATASET, purpose="training", run_id=run_id, columns=COLUMNS, transform=featurize
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
    return {
        "run_id": run_id,
        "dataset": DATASET,
        "epochs": epochs,
        "loss": [round(v, 4) for v in losses],
        "held_out_accuracy": round(correct / seen, 4) if seen else None,
        "held_out_rows": seen,
        "rows_seen": rows,
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
    token = gateway.tokens.issue("demo-trainer", "trainer")
    return flight.location, token, f"http://127.0.0.1:{port}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flight-url", default="grpc://127.0.0.1:8815")
    parser.add_argument("--token", default=os.environ.get("GOVERN_TOKEN"))
    parser.add_argument("--api-url", help="REST base URL, to print the recorded run")
    parser.add_argument("--run-id", default=f"reference-{secrets.token_hex(4)}")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo", action="store_true", help="serve a throwaway demo gateway")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url, token, api = args.flight_url, args.token, args.api_url
        if args.demo:
            url, token, api = _demo_gateway(stack)
        if not token:
            parser.error("a bearer token is required (--token or GOVERN_TOKEN)")
        with govern_connect.connect(url, token) as client:
            result = train(
                client,
                args.run_id,
                epochs=args.epochs,
                workers=args.workers,
                lr=args.lr,
                seed=args.seed,
            )
        if api:
            result["recorded"] = run_record(api, token, args.run_id)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
