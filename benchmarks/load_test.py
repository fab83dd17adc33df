"""Many artists at once through the running app: throughput, latency, and proof that nothing was lost.

    python -m benchmarks.load_test                                  # 20 clients x 3 requests, SQLite
    python -m benchmarks.load_test --postgres-url postgresql://u@127.0.0.1:5432/postgres   # and PostgreSQL
    python -m benchmarks.load_test --clients 4 --requests 2 --in-process

The real server (`mimicsafe serve --no-embedded-worker`, a subprocess unless --in-process) is started on a
free loopback port with a temporary MIMICSAFE_HOME. Each artist gets an account, a registered signing key,
a verified portfolio work and a LoRA (made in code for the tiny demo model). Then `--clients` threads, each
with its own gradio_client logged in as its own artist, send `--requests` requests in turn from the mix:

    upload    a new work, signed with the artist's key (accepted) or, on alternate turns, unsigned (rejected,
              queued for review), through /artist_uploads_submit
    check     the public page's /verify of the artist's verified portfolio work
    generate  one 64-pixel image with the tiny model in `--steps` steps, through /artist_generate

Bounded: after `--time-cap` seconds no new request starts (those left are reported as skipped).
Afterwards, with the server stopped, the store is checked: every upload answered has exactly one Upload
row with its verdict, no row exists that no answer announced, every Upload has exactly one matching
`upload.*` audit entry, every generation its `generation.register` entry, and `mimicsafe audit verify`
(the CLI, run against the same home) exits 0. On PostgreSQL a fresh database is made on the server
(named mimicsafe_load_<random>) and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("upload", "check", "generate")
PASSWORD = "load-test-password"
ADMIN = "loadadmin"


@dataclass(frozen=True)
class LoadConfig:
    clients: int = 20
    requests: int = 3  # per client
    mix: tuple[str, ...] = KINDS
    steps: int = 2  # generation steps
    time_cap: float = 600.0  # seconds after which no new request starts
    in_process: bool = False  # serve from this process instead of a `mimicsafe serve` subprocess


@dataclass
class Call:
    kind: str
    seconds: float
    error: str | None = None
    decision: str | None = None  # uploads: accepted|rejected as the answer said
    file_name: str | None = None


@dataclass
class LoadResult:
    backend: str
    config: LoadConfig
    wall_seconds: float
    calls: list[Call]
    skipped: int
    users: list[str]
    checks: dict[str, object] = field(default_factory=dict)  # invariant name -> observed value
    machine_load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average when the clock started and stopped
    server_errors: list[str] = field(default_factory=list)  # tracebacks in the server's log (subprocess only)
    problems: list[str] = field(default_factory=list)  # every broken invariant, in words

    @property
    def errors(self) -> list[Call]:
        return [c for c in self.calls if c.error is not None]


# --- the world: artists, keys, portfolio works, models ---------------------------------------------------

def _png(artist: int, work: int) -> bytes:
    from PIL import Image

    from benchmarks.synthetic_art import make_artist, make_artwork

    out = io.BytesIO()
    Image.fromarray(make_artwork(make_artist(artist), work)).save(out, format="PNG")
    return out.getvalue()


def _lora_file() -> bytes:
    """A diffusers-format LoRA for the tiny UNet with non-zero weights, as a finished training leaves."""
    import torch
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    from mimicsafe.models.tiny import build_tiny_unet

    unet = build_tiny_unet(0)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    with tempfile.TemporaryDirectory() as directory:
        StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=layers)
        return (Path(directory) / "pytorch_lora_weights.safetensors").read_bytes()


@dataclass
class Artist:
    name: str
    seed: int
    private_key: bytes
    portfolio_png: Path
    model_id: int | None


def populate(instance, files: Path, count: int, *, with_models: bool) -> list[Artist]:  # noqa: ANN001
    """Artists made through the services, as the CLI would: account, key, verified work, model."""
    from mimicsafe import accounts, keys, portfolio
    from mimicsafe.db.models import Dataset, LoraModel, TrainingJob
    from mimicsafe.imaging import NamedFile
    from mimicsafe.training.manifest import manifest_sha256
    from ownership.signatures import generate_keypair

    lora_sha = instance.blobs.put(_lora_file()) if with_models else None
    artists = []
    with instance.transaction() as session:
        accounts.create_user(session=session, username=ADMIN, role="admin", password=PASSWORD)
    for i in range(count):
        name, seed = f"artist{i:02d}", 1000 + i
        private, public = generate_keypair()
        published = files / f"{name}-published.png"
        published.write_bytes(_png(seed, 0))
        with instance.transaction() as session:
            accounts.create_user(session=session, username=name, role="artist", password=PASSWORD)
            keys.register_key(session=session, username=name, public_key_text=public, actor=name)
            portfolio.add_items(session=session, blobs=instance.blobs, settings=instance.settings, username=name,
                                files=[NamedFile(published.name, published.read_bytes())],
                                evidence_url=f"https://example.org/{name}", actor=name)
            portfolio.verify_items(session=session, registry=instance.registry, username=name, admin=ADMIN)
            model_id = None
            if lora_sha is not None:
                user = accounts.get_user(session=session, username=name)
                manifest = {"artist": name, "items": [], "made_for": "load test"}
                dataset = Dataset(user_id=user.id, manifest=manifest, item_count=0, policy_version="1",
                                  manifest_sha256=manifest_sha256(manifest))
                session.add(dataset)
                session.flush()
                job = TrainingJob(user_id=user.id, dataset_id=dataset.id, preset="tiny", config={},
                                  status="completed")
                session.add(job)
                session.flush()
                model = LoraModel(user_id=user.id, job_id=job.id, name=f"{name} style", blob_sha256=lora_sha,
                                  provenance={"dataset_manifest_sha256": dataset.manifest_sha256})
                session.add(model)
                session.flush()
                model_id = model.id
        artists.append(Artist(name, seed, private, published, model_id))
    return artists


# --- the server ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(home: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMICSAFE_")}
    env.update(MIMICSAFE_HOME=str(home), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    if database_url:
        env["MIMICSAFE_DATABASE_URL"] = database_url
    return env


def _wait_until_up(url: str, deadline: float, process: subprocess.Popen | None) -> None:
    import httpx

    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before answering")
        try:
            if httpx.get(url + "/login", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the server at {url} did not answer within the start-up time")


@contextlib.contextmanager
def serving(instance, home: Path, database_url: str | None, *, in_process: bool) -> Iterator[str]:  # noqa: ANN001
    """The app on a free loopback port; yields its URL (no trailing slash)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    if in_process:
        from ui.app import build_app

        app = build_app(instance).queue(default_concurrency_limit=4)  # as `mimicsafe serve` does
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            _wait_until_up(url, time.monotonic() + 60, None)
            yield url
        finally:
            app.close()
        return
    log = (home / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "ui", "serve", "--no-embedded-worker", "--host", "127.0.0.1",
                                "--port", str(port)], env=_environment(home, database_url),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(url, time.monotonic() + 180, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# --- the clients ---------------------------------------------------------------------------------------

def _client_run(url: str, artist: Artist, index: int, config: LoadConfig, files: Path, deadline: float,
                start: threading.Barrier, calls: list[Call], skipped: list[int]) -> None:
    from gradio_client import Client, handle_file

    from ownership.signatures import sign_manifest

    login = Call("login", 0.0)
    began = time.perf_counter()
    try:  # Argon2 checks of 20 passwords at once take a while on a small machine: patient timeouts
        client = Client(url + "/", auth=(artist.name, PASSWORD), verbose=False, httpx_kwargs={"timeout": 300})
        public = Client(url + "/public/", verbose=False, httpx_kwargs={"timeout": 300})
    except Exception as exc:  # noqa: BLE001 - a failed login is one of the errors this test reports
        login.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    login.seconds = time.perf_counter() - began
    calls.append(login)
    start.wait()  # the clock starts when every client has logged in (or failed to)
    if login.error is not None:
        skipped.append(config.requests)
        return
    uploads_sent = 0
    for j in range(config.requests):
        if time.monotonic() >= deadline:
            skipped.append(config.requests - j)
            return
        kind = config.mix[(index + j) % len(config.mix)]
        call = Call(kind, 0.0)
        began = time.perf_counter()
        try:
            if kind == "upload":
                picture = files / f"{artist.name}-upload{j}.png"
                picture.write_bytes(_png(artist.seed, j + 1))
                signatures = []
                signed = (index + uploads_sent) % 2 == 0  # signed: accepted; unsigned: rejected, no proof
                uploads_sent += 1
                if signed:
                    manifest = files / f"{artist.name}-upload{j}.json"
                    manifest.write_bytes(sign_manifest(private_key_path_or_bytes=artist.private_key,
                                                       artist=artist.name, files=[picture]))
                    signatures = [handle_file(str(manifest))]
                cards, *_ = client.predict([handle_file(str(picture))], signatures, api_name="/artist_uploads_submit")
                call.file_name = picture.name
                call.decision = ("accepted" if f"{picture.name} — ACCEPTED" in cards
                                 else "rejected" if "REJECTED" in cards else None)
                if call.decision is None:
                    call.error = f"no verdict in the answer: {cards[:200]!r}"
            elif kind == "check":
                card = public.predict(handle_file(str(artist.portfolio_png)), api_name="/verify")
                if not isinstance(card, str) or not card:
                    call.error = f"empty check answer: {card!r}"
            else:
                gallery, _summary, _files = client.predict("a cat in a hat", "", artist.model_id, "single images", 1,
                                                           config.steps, 1.0, index * 100 + j,
                                                           api_name="/artist_generate")
                if len(gallery) != 1:
                    call.error = f"expected one image, got {len(gallery)}"
        except Exception as exc:  # noqa: BLE001
            call.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        call.seconds = time.perf_counter() - began
        calls.append(call)


# --- what was stored -----------------------------------------------------------------------------------

def audit_verify_cli(home: Path, database_url: str | None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "ui", "audit", "verify"], env=_environment(home, database_url),
                          capture_output=True, text=True, timeout=300)
    return done.returncode, (done.stdout + done.stderr).strip()


def check_store(instance, result: LoadResult, home: Path, database_url: str | None) -> None:  # noqa: ANN001
    """Fill result.checks and result.problems with the no-loss invariants."""
    from sqlalchemy import func, select

    from mimicsafe.db.models import AuditEntry, Generation, Upload, User

    answered = [c for c in result.calls if c.kind == "upload" and c.error is None]
    answered_names = Counter(c.file_name for c in answered)
    with instance.transaction() as session:
        rows = session.execute(select(Upload.id, Upload.file_name, Upload.decision, Upload.verdict)
                               .join(User, User.id == Upload.user_id)
                               .where(User.username.in_(result.users))).all()
        upload_audit = session.execute(select(AuditEntry.action, AuditEntry.details)
                                       .where(AuditEntry.action.in_(["upload.accepted", "upload.rejected"]))).all()
        generations = session.scalar(select(func.count(Generation.id)).join(User, User.id == Generation.user_id)
                                     .where(User.username.in_(result.users)))
        generation_audit = session.scalar(select(func.count(AuditEntry.id))
                                          .where(AuditEntry.action == "generation.register"))
    stored_names = Counter(name for _, name, _, _ in rows)
    by_upload = Counter(details.get("upload_id") for _, details in upload_audit)
    decision_of = {details.get("upload_id"): action.removeprefix("upload.") for action, details in upload_audit}
    answered_decisions = Counter(c.decision for c in answered)
    generated_ok = sum(1 for c in result.calls if c.kind == "generate" and c.error is None)
    result.checks.update({
        "uploads answered (accepted+rejected)": f"{len(answered)} ({answered_decisions['accepted']}+"
                                                f"{answered_decisions['rejected']})",
        "Upload rows": len(rows),
        "upload audit entries": len(upload_audit),
        "generations answered / stored / audited": f"{generated_ok} / {generations} / {generation_audit}",
    })
    if len(rows) != len(answered):
        result.problems.append(f"{len(rows)} Upload rows for {len(answered)} answered uploads")
    for name, n in answered_names.items():
        if stored_names[name] != n:
            result.problems.append(f"{name}: answered {n} time(s), stored {stored_names[name]}")
    for name in stored_names.keys() - answered_names.keys():
        result.problems.append(f"{name}: stored but no answer announced it")
    for upload_id, name, decision, verdict in rows:
        if not verdict or verdict.get("decision") != decision:
            result.problems.append(f"upload #{upload_id} ({name}): stored verdict missing or differs from its row")
        if by_upload[upload_id] != 1:
            result.problems.append(f"upload #{upload_id}: {by_upload[upload_id]} audit entries (expected 1)")
        elif decision_of[upload_id] != decision:
            result.problems.append(f"upload #{upload_id}: audited as {decision_of[upload_id]}, stored as {decision}")
    wanted = {c.file_name: c.decision for c in answered}
    for _, name, decision, _ in rows:
        if name in wanted and wanted[name] != decision:
            result.problems.append(f"{name}: answered {wanted[name]}, stored {decision}")
    if generations != generation_audit or generations < generated_ok:
        result.problems.append(f"{generated_ok} generations answered, {generations} stored, "
                               f"{generation_audit} audited")
    status, output = audit_verify_cli(home, database_url)
    result.checks["mimicsafe audit verify"] = f"exit {status}: {output.splitlines()[-1] if output else ''}"
    if status != 0:
        result.problems.append(f"mimicsafe audit verify exited {status}: {output}")


# --- one run -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the server that `server_url` points at; dropped afterwards."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    name = f"mimicsafe_load_{secrets.token_hex(4)}"
    admin = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def run_load(config: LoadConfig, home: Path, *, database_url: str | None = None) -> LoadResult:
    """Populate a new instance at `home` (on `database_url` if given), serve it, load it, check the store."""
    from mimicsafe.context import open_instance
    from mimicsafe.settings import load_settings

    files = home / "client-files"
    files.mkdir(parents=True, exist_ok=True)
    settings = load_settings(home=home, database_url=database_url)
    instance = open_instance(settings)
    try:
        artists = populate(instance, files, config.clients, with_models="generate" in config.mix)
        if not config.in_process:
            instance.engine.dispose()  # the server is another process; this one only reads after it stops
        calls: list[Call] = []
        skipped: list[int] = []
        start = threading.Barrier(config.clients + 1)
        with serving(instance, home, database_url, in_process=config.in_process) as url:
            deadline = time.monotonic() + config.time_cap
            threads = [threading.Thread(target=_client_run, daemon=True,
                                        args=(url, a, i, config, files, deadline, start, calls, skipped))
                       for i, a in enumerate(artists)]
            for thread in threads:
                thread.start()
            start.wait()  # every client has logged in: the clock starts now (logins are timed apart)
            began, load_before = time.perf_counter(), os.getloadavg()[0]
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()) + 300)
            wall, load_after = time.perf_counter() - began, os.getloadavg()[0]
            stuck = sum(thread.is_alive() for thread in threads)
        backend = "postgresql" if database_url and database_url.startswith("postgres") else "sqlite"
        result = LoadResult(backend, config, wall, list(calls), sum(skipped), [a.name for a in artists],
                            machine_load=(load_before, load_after))
        if stuck:
            result.problems.append(f"{stuck} client(s) still waiting for an answer when the server stopped")
        result.server_errors = server_tracebacks(home / "server.log")
        check_store(instance, result, home, database_url)
        return result
    finally:
        instance.close()


def server_tracebacks(log: Path, *, lines_each: int = 12) -> list[str]:
    """The last lines of each traceback the server logged: what an error answer without details was."""
    if not log.is_file():
        return []
    text = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(text) if line.startswith("Traceback (most recent call last)")]
    found = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(text)
        block = [line for line in text[start:end] if line.strip()]
        found.append("\n".join(block[-lines_each:]))
    return found


# --- the report ----------------------------------------------------------------------------------------

def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(result: LoadResult) -> str:
    c = result.config
    ok = [call for call in result.calls if call.error is None and call.kind != "login"]
    steps = f", {c.steps}-step generations" if "generate" in c.mix else ""
    lines = [f"\n{result.backend}: {c.clients} clients x {c.requests} requests (mix {'/'.join(c.mix)}{steps}), "
             f"{'in-process' if c.in_process else 'subprocess'} server, "
             f"{result.wall_seconds:.1f} s wall, machine load average {result.machine_load[0]:.1f} -> "
             f"{result.machine_load[1]:.1f} on {os.cpu_count()} CPUs",
             f"   {'kind':10s} {'ok':>5s} {'errors':>7s} {'p50 s':>8s} {'p95 s':>8s} {'max s':>8s}"]
    for kind in (*KINDS, "login"):
        mine = [call for call in result.calls if call.kind == kind]
        if not mine:
            continue
        times = [call.seconds for call in mine if call.error is None]
        lines.append(f"   {kind:10s} {len(times):5d} {len(mine) - len(times):7d} {_percentile(times, 50):8.2f} "
                     f"{_percentile(times, 95):8.2f} {max(times, default=float('nan')):8.2f}")
    lines.append(f"   requests: {len(ok)} ok, {len(result.errors)} errors (logins included), {result.skipped} not sent "
                 "(time cap or failed login), "
                 f"{len(ok) / result.wall_seconds if result.wall_seconds else 0:.2f} requests/s")
    for call in result.errors[:5]:
        lines.append(f"   error ({call.kind}): {call.error}")
    for trace in result.server_errors[:3]:
        lines.append("   server traceback (end):\n" + "\n".join(f"     | {line}" for line in trace.splitlines()))
    lines.append("   no-loss checks:")
    lines += [f"     {name:42s} {value}" for name, value in result.checks.items()]
    lines.append("   NOTHING LOST" if not result.problems else "   PROBLEMS:\n" +
                 "\n".join(f"     - {p}" for p in result.problems))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent artists (default 20)")
    parser.add_argument("--requests", type=int, default=3, help="requests per client (default 3)")
    parser.add_argument("--mix", default=",".join(KINDS), help="request kinds in turn (default upload,check,generate)")
    parser.add_argument("--steps", type=int, default=2, help="generation steps (default 2)")
    parser.add_argument("--time-cap", type=float, default=600.0, help="no new request after this many s (600)")
    parser.add_argument("--in-process", action="store_true", help="serve from this process, not a subprocess")
    parser.add_argument("--postgres-url", default=os.environ.get("MIMICSAFE_TEST_POSTGRES_URL") or None,
                        help="also run on a fresh database on this PostgreSQL server "
                             "(default: $MIMICSAFE_TEST_POSTGRES_URL)")
    args = parser.parse_args(argv)
    mix = tuple(k.strip() for k in args.mix.split(",") if k.strip())
    if not mix or set(mix) - set(KINDS) or args.clients < 1 or args.requests < 1:
        parser.error(f"--mix takes kinds from {', '.join(KINDS)}; --clients and --requests must be >= 1")
    config = LoadConfig(clients=args.clients, requests=args.requests, mix=mix, steps=args.steps,
                        time_cap=args.time_cap, in_process=args.in_process)
    results = []
    with tempfile.TemporaryDirectory(prefix="mimicsafe-load-") as root:
        results.append(run_load(config, Path(root) / "sqlite"))
        print(report(results[-1]), flush=True)
        if args.postgres_url:
            with fresh_postgres(args.postgres_url) as url:
                results.append(run_load(config, Path(root) / "postgresql", database_url=url))
            print(report(results[-1]), flush=True)
    return 1 if any(r.problems or r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
