"""A steady stream of pod CREATEs (server-side dry runs) through the real apiserver.

Half the pods fit TeslaM40, half ask for more cards than its nodes have; every answer is
classified against that: `right` (201 for a fit, 403 from nodelimits for the rest),
`wrong` (the other verdict) or `failed` (anything else: the webhook unreachable, a
timeout). Used while `helm upgrade` rolls the replicas and while one is killed.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from devtools.builders import container, pod
from devtools.realnode import RealNode

WORKERS = 8


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, detail: str = "") -> None:
        with self.lock:
            self.counts[outcome] += 1
            if outcome != "right" and len(self.failures) < 20:
                self.failures.append(detail[:300])

    @property
    def sent(self) -> int:
        return sum(self.counts.values())


class CreateStream:
    """`rate` pod CREATEs per second into `namespace` from start() until stop()."""

    def __init__(self, node: RealNode, namespace: str, rate: float = 50.0) -> None:
        plane = node.plane
        assert plane is not None
        context = ssl.create_default_context(cafile=str(plane.ca_file))
        context.load_cert_chain(str(plane.admin_cert_file), str(plane.admin_key_file))
        self.client = httpx.Client(
            base_url=plane.url, verify=context, timeout=15.0,
            limits=httpx.Limits(max_connections=WORKERS),
        )  # fmt: skip
        self.path = f"/api/v1/namespaces/{namespace}/pods?dryRun=All"
        self.namespace = namespace
        self.rate = rate
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CreateStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        self.client.close()

    def _run(self) -> None:
        with ThreadPoolExecutor(WORKERS) as pool:
            began, n = time.monotonic(), 0
            while not self._stop.is_set():
                pool.submit(self._one, n)
                n += 1
                delay = began + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def _one(self, n: int) -> None:
        fits = n % 2 == 0
        gpus = 1 if fits else 3
        body = pod(container(cpu="100m", gpu=gpus), name=f"load-{n}", namespace=self.namespace)
        try:
            response = self.client.post(self.path, content=json.dumps(body))
        except httpx.HTTPError as exc:
            self.tally.add("failed", f"{type(exc).__name__}: {exc}")
            return
        text = response.text
        denied = response.status_code == 403 and "nodelimits: Pod" in text
        if (fits and response.status_code == 201) or (not fits and denied):
            self.tally.add("right")
        elif response.status_code in (201, 403) and "failed calling webhook" not in text:
            self.tally.add("wrong", f"{response.status_code} fits={fits}: {text}")
        else:
            self.tally.add("failed", f"{response.status_code}: {text}")
