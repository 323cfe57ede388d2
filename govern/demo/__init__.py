"""The demo: generated datasets with data subjects, demo principals and their policies."""

from __future__ import annotations

from govern.demo.datasets import DEMO_DATASETS, DemoDataset
from govern.demo.load import DEMO_PRINCIPALS, load_demo

__all__ = ["DEMO_DATASETS", "DEMO_PRINCIPALS", "DemoDataset", "load_demo"]
