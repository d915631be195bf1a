"""Signed checkpoints of the audit log: the key, the schedule, where they are published.

The log's Ed25519 key lives in the state directory (``checkpoint.key``, 0600, a C2SP signer
key whose name is the log's origin), never in the audit database: whoever can write the
database cannot sign a rewritten history. ``checkpoint.pub`` beside it is the verifier key to
hand to witnesses and data protection officers.

A :class:`Checkpointer` signs the tree head every ``interval`` seconds and as soon as
``every`` entries were added since the last checkpoint, and once more when it closes. Each
checkpoint goes to every publisher: an append-only checkpoint file (``KETENPOORT_CHECKPOINTS=
file:PATH``), a span event on the tracer (exported with the traces, e.g. over OTLP), and the
in-memory latest one served at ``GET /.well-known/ketenpoort/checkpoint``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from opentelemetry.trace import Tracer

from gateway.audit.merkle import EMPTY_ROOT
from gateway.audit.note import (
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    open_checkpoint,
    parse_note,
    sign_checkpoint,
)

log = logging.getLogger("ketenpoort.audit.checkpoints")

KEY_FILE = "checkpoint.key"
PUBLIC_FILE = "checkpoint.pub"
DEFAULT_ORIGIN = "ketenpoort.local/audit"

#: Reads the current tree head: (size, root hash).
HeadReader = Callable[[], Awaitable[tuple[int, bytes]]]
#: Receives each signed checkpoint.
Publisher = Callable[[Note, Checkpoint], None]


class KeyMissing(Exception):
    """The state directory holds no checkpoint key (and none may be created here)."""


def load_signer(state_dir: Path, origin: str = DEFAULT_ORIGIN, *, create: bool) -> Signer:
    """The log's signing key of the state directory; created (0600) when ``create``.

    A key whose name is not ``origin`` is refused: checkpoints name the log by its key.
    """
    path = state_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise KeyMissing(f"no checkpoint key in {state_dir} ({KEY_FILE})")
        state_dir.mkdir(parents=True, exist_ok=True)
        _create_private(path, Signer.generate(origin).skey())
    signer = Signer.parse(path.read_text(encoding="ascii"))
    if signer.name != origin:
        raise NoteError(
            f"{path} signs for log {signer.name!r}, not {origin!r} (KETENPOORT_LOG_ORIGIN)"
        )
    public = state_dir / PUBLIC_FILE
    vkey = signer.verifier.vkey() + "\n"
    if not public.exists() or public.read_text(encoding="ascii") != vkey:
        public.write_text(vkey, encoding="ascii")
    return signer


def _create_private(path: Path, text: str) -> None:
    """Write a secret file atomically (0600); the first writer wins."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def load_verifier(text_or_path: str | Path) -> Verifier:
    """A verifier key given as text or as a file holding it."""
    text = str(text_or_path)
    path = Path(text)
    with contextlib.suppress(OSError):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
    return Verifier.parse(text)


# ---- checkpoint files ---------------------------------------------------------------------


def iter_notes(text: str) -> Iterator[Note]:
    """The notes of a checkpoint file (notes appended one after another, blank-line separated).

    A checkpoint body has no blank line, so the file is a sequence of blocks: a body, then
    its block of signature lines.
    """
    blocks = [b for b in text.split("\n\n") if b.strip("\n")]
    i = 0
    while i < len(blocks):
        body = blocks[i].strip("\n") + "\n"
        if i + 1 >= len(blocks) or not blocks[i + 1].startswith("\u2014 "):
            raise NoteError(f"checkpoint file: block {i + 1} has no signature lines after it")
        yield parse_note(body + "\n" + blocks[i + 1].strip("\n") + "\n")
        i += 2


def file_publisher(path: Path) -> Publisher:
    """Appends each checkpoint note to ``path`` (fsynced), separated by a blank line."""

    def publish(note: Note, _: Checkpoint) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(note.render() + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    return publish


def published_file(spec: str, state_dir: Path) -> Path | None:
    """The checkpoint file ``KETENPOORT_CHECKPOINTS`` names: ``file:PATH`` (or empty:
    ``<state>/checkpoints.txt``); ``None`` for ``none``. Raises ``ValueError`` otherwise."""
    if spec == "none":
        return None
    if not spec:
        return state_dir / "checkpoints.txt"
    if spec.startswith("file:") and len(spec) > len("file:"):
        return Path(spec.removeprefix("file:"))
    raise ValueError(f"KETENPOORT_CHECKPOINTS must be file:PATH or none; got {spec!r}")


def publishers_for(spec: str, state_dir: Path) -> list[Publisher]:
    """The file publisher of :func:`published_file`, or none."""
    path = published_file(spec, state_dir)
    return [] if path is None else [file_publisher(path)]


def signed_checkpoints(text: str, key: Verifier) -> list[Checkpoint]:
    """Every checkpoint in a checkpoint file's ``text``, each signature verified by ``key``.

    Raises :class:`NoteError` naming the first note that is malformed or does not verify.
    """
    found: list[Checkpoint] = []
    for n, note in enumerate(iter_notes(text), 1):
        try:
            checkpoint, _ = open_checkpoint(note.render(), key)
        except NoteError as exc:
            raise NoteError(f"checkpoint {n} does not verify: {exc}") from exc
        found.append(checkpoint)
    return found


class Checkpointer:
    """Signs the tree head on a schedule and publishes each checkpoint.

    ``interval`` seconds at most between checkpoints (when the tree grew), and a checkpoint as
    soon as ``every`` entries were added (:meth:`appended` is the writer's hook). A failure to
    sign or publish is logged and retried at the next tick: it never touches requests.
    """

    def __init__(
        self,
        signer: Signer,
        head: HeadReader,
        publishers: list[Publisher],
        *,
        interval: float,
        every: int,
    ) -> None:
        if interval <= 0 or every <= 0:
            raise ValueError("checkpoint interval and entry count must be positive")
        self.signer = signer
        self._head = head
        self._publishers = publishers
        self._interval = interval
        self._every = every
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.latest: tuple[Note, Checkpoint] | None = None
        self.signed = 0
        self._pending = 0
        self._stopping = False

    @property
    def origin(self) -> str:
        return self.signer.name

    def appended(self, count: int) -> None:
        """The writer's hook: ``count`` entries were committed (cheap: a counter)."""
        self._pending += count
        if self._pending >= self._every:
            self._due.set()

    async def start(self) -> None:
        """Sign the current head, then run the schedule in the background."""
        await self.checkpoint()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="ketenpoort-checkpointer"
        )

    async def close(self) -> None:
        """Stop the schedule and sign the final head.

        The schedule is stopped, not cancelled: a checkpoint being published is finished
        first, so every published checkpoint reaches every publisher.
        """
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._due.set()
            await task
        with contextlib.suppress(Exception):  # logged in checkpoint(); closing goes on
            await self.checkpoint()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), timeout=self._interval)
            self._due.clear()
            if self._stopping:
                return
            with contextlib.suppress(Exception):  # logged; the next tick tries again
                await self.checkpoint()
            if self._pending < self._every:
                # Commits during the checkpoint still saw the old count and set the event
                # again: that would sign a second checkpoint a few entries later.
                self._due.clear()

    def _publish(self, note: Note, checkpoint: Checkpoint) -> None:
        for publish in self._publishers:
            publish(note, checkpoint)

    async def checkpoint(self, *, force: bool = False) -> tuple[Note, Checkpoint]:
        """Sign and publish the current head (unless it equals the latest one)."""
        async with self._lock:
            pending = self._pending
            try:
                size, root = await self._head()
                if self.latest is not None and self.latest[1].size == size and not force:
                    return self.latest
                checkpoint = Checkpoint(self.origin, size, root if size else EMPTY_ROOT)
                note = sign_checkpoint(checkpoint, self.signer)
                if self._publishers:
                    # A file append with fsync: off the event loop, where requests wait (one
                    # hop for every publisher).
                    await asyncio.to_thread(self._publish, note, checkpoint)
            except Exception as exc:
                log.error("checkpoint failed: %s: %s", type(exc).__name__, exc)
                raise
            self.latest = (note, checkpoint)
            self._pending = max(0, self._pending - pending)
            self.signed += 1
            return self.latest


def span_publisher(tracer: Tracer) -> Publisher:
    """Emits each checkpoint as a span ``ketenpoort.checkpoint`` with an event ``checkpoint``
    (exported with the traces, e.g. over OTLP, to a collector the DBA does not run)."""

    def publish(note: Note, checkpoint: Checkpoint) -> None:
        span = tracer.start_span("ketenpoort.checkpoint")
        try:
            span.add_event(
                "checkpoint",
                {
                    "log.origin": checkpoint.origin,
                    "log.size": checkpoint.size,
                    "log.root": base64.b64encode(checkpoint.root).decode("ascii"),
                    "log.checkpoint": note.render(),
                },
            )
        finally:
            span.end()

    return publish
