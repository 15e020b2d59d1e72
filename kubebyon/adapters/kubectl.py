"""The real ``kubectl`` binary, run for the console proxy (seed §3.7).

Satisfies ``api.state.KubectlRunner``. The caller has already checked the arguments
against ``kubebyon.domain.kubectl``; this module only runs them safely: no shell, the
kubeconfig in a private temporary directory (0700, file 0600, removed afterwards) that is
also kubectl's HOME (so its discovery cache goes there too), a minimal environment (no
inherited KUBECONFIG, proxies or credentials), a time limit after which the whole
process group is killed, and a cap on the output kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kubebyon.domain.kubectl import KubectlResult, KubectlTimedOut, KubectlUnavailable

_CHUNK = 64 * 1024


class Kubectl:
    def __init__(self, *, path: Path | None, timeout: float, max_output_bytes: int) -> None:
        self.path = path
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes

    def _binary(self) -> str:
        if self.path is not None:
            return str(self.path)
        found = shutil.which("kubectl")
        if found is None:
            raise KubectlUnavailable(
                "kubectl is not installed on the server (not on PATH; set KUBEBYON_KUBECTL_PATH)"
            )
        return found

    async def run(self, kubeconfig: str, args: Sequence[str]) -> KubectlResult:
        binary = self._binary()
        with tempfile.TemporaryDirectory(prefix="kubebyon-kubectl-") as home:
            config_path = Path(home, "kubeconfig")
            fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as config_file:
                config_file.write(kubeconfig)
            try:
                proc = await asyncio.create_subprocess_exec(
                    binary,
                    f"--kubeconfig={config_path}",
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env={"HOME": home, "PATH": os.defpath},
                    cwd=home,
                    start_new_session=True,  # its own process group, killed as a whole
                )
            except OSError as exc:
                raise KubectlUnavailable(
                    f"kubectl cannot be started ({binary}: {exc.strerror or exc})"
                ) from None
            try:
                assert proc.stdout is not None and proc.stderr is not None
                async with asyncio.timeout(self.timeout):
                    (out, out_cut), (err, err_cut) = await asyncio.gather(
                        self._read(proc.stdout), self._read(proc.stderr)
                    )
                    exit_code = await proc.wait()
            except TimeoutError:
                raise KubectlTimedOut(
                    f"kubectl did not finish within {self.timeout:g} seconds and was stopped"
                ) from None
            finally:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
        return KubectlResult(
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            exit_code=exit_code,
            truncated=out_cut or err_cut,
        )

    async def _read(self, stream: asyncio.StreamReader) -> tuple[bytes, bool]:
        """Everything up to the cap; the rest is read and dropped so kubectl can finish
        (its output is finite: watch and follow forms are refused before it runs)."""
        kept = bytearray()
        truncated = False
        while chunk := await stream.read(_CHUNK):
            room = self.max_output_bytes - len(kept)
            if len(chunk) > room:
                truncated = True
            kept += chunk[: max(room, 0)]
        return bytes(kept), truncated
