"""What every batch worker does first: load the model set once and prove it is the coordinator's."""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine.batch.jobs import worker_name
from engine.errors import ModelSetError
from engine.modelset import CONSTANTS, MANIFEST, file_sha256


def model_fingerprint(root: Path) -> str:
    """The manifest (which holds every stage file's sha256) and the constants, hashed together."""
    h = hashlib.sha256()
    for name in (MANIFEST, CONSTANTS):
        h.update(file_sha256(Path(root) / name).encode())
    return h.hexdigest()


def load_tracker(config: str, model: str | None, fingerprint: str):
    """The tracker of one worker; its stage files are checked against their manifest, and the manifest
    against the coordinator's, so no worker tracks with a different model set."""
    from engine.tracker import Tracker

    tracker = Tracker.from_config(config, model=model, verify_checksums=True)
    mine = model_fingerprint(tracker.modelset.root)
    if mine != fingerprint:
        raise ModelSetError(f"worker {worker_name()}: its model set {tracker.modelset.root} differs from the "
                            f"coordinator's (fingerprint {mine[:12]}, expected {fingerprint[:12]}); every worker "
                            f"needs the same model set files")
    return tracker
