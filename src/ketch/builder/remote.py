"""What a build fetches: files at http(s) URLs (``ADD URL``, a tarball or Containerfile as the
context) and git repositories (``ADD repo.git#ref:subdir``, ``ketch build repo.git#ref``).

HTTP goes through urllib3, ketch's HTTP library; git through the ``git`` program, which speaks
every transport (https, ssh, git://, file) with the user's own configuration: no library does that
as well, and git is what buildah runs too."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from email.utils import parsedate_to_datetime

from ketch.errors import BuildError, InvalidInputError

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_url(text: str) -> bool:
    return bool(_SCHEME.match(text)) or text.startswith("git@")


def is_git(text: str) -> bool:
    """A git repository's address, as Docker tells them: ``git://``, ``git@host:``, ``ssh://``,
    or an http(s) or file URL whose path ends in ``.git`` (a ``#ref:subdir`` fragment may follow)."""
    address = text.split("#", 1)[0]
    if text.startswith(("git://", "git@", "ssh://")):
        return True
    return address.startswith(("http://", "https://", "file://")) and address.rstrip("/").endswith(".git")


class Downloaded:
    """A file fetched over http(s): where it is, the name its URL gives it, its digest and the
    server's Last-Modified time (None without one)."""

    def __init__(self, path: str, name: str, digest: str, mtime: float | None) -> None:
        self.path, self.name, self.digest, self.mtime = path, name, digest, mtime


def download(url: str, directory: str) -> Downloaded:
    """``url``'s body into a new file in ``directory``; one-line errors for a refused connection,
    an HTTP error status or a broken transfer."""
    import urllib.parse

    import urllib3

    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"{url}: only http and https URLs can be fetched")
    os.makedirs(directory, exist_ok=True)
    hasher = hashlib.sha256()
    path = os.path.join(directory, hashlib.sha256(url.encode()).hexdigest()[:24])
    try:
        response = urllib3.PoolManager().request("GET", url, preload_content=False, retries=urllib3.Retry(2))
    except urllib3.exceptions.HTTPError as exc:
        raise BuildError(f"fetching {url}: {_reason(exc)}") from exc
    try:
        if response.status != 200:
            raise BuildError(f"fetching {url}: HTTP {response.status}")
        with open(path, "wb") as out:
            for chunk in response.stream(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
        modified = response.headers.get("Last-Modified")
    except urllib3.exceptions.HTTPError as exc:
        raise BuildError(f"fetching {url}: {_reason(exc)}") from exc
    finally:
        response.release_conn()
    mtime = None
    if modified:
        try:
            mtime = parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            mtime = None
    name = os.path.basename(urllib.parse.urlsplit(url).path.rstrip("/")) or "index.html"
    return Downloaded(path, name, f"sha256:{hasher.hexdigest()}", mtime)


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).splitlines()[0]


def check_checksum(url: str, wanted: str, got: str) -> None:
    """ADD --checksum: the download's digest must be the one given."""
    algorithm, _, value = wanted.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise InvalidInputError(f"invalid --checksum {wanted!r}: want sha256:<64 hex digits>")
    if wanted != got:
        raise BuildError(f"ADD {url}: the checksum does not match: --checksum {wanted}, the download {got}")


def split_git(address: str) -> tuple[str, str | None, str]:
    """``repo#ref:subdir`` -> (repository, ref or None, subdirectory or "")."""
    repository, _, fragment = address.partition("#")
    ref, _, subdir = fragment.partition(":")
    return repository, ref or None, subdir.strip("/")


def clone(address: str, directory: str, *, keep_git_dir: bool = False) -> tuple[str, str]:
    """The repository of ``address`` (``repo#ref:subdir``) checked out into ``directory`` (which
    must not exist): the path of its subdirectory, and the commit. Without ``keep_git_dir`` the
    .git directory goes, as Docker's and buildah's git sources have none."""
    repository, ref, subdir = split_git(address)
    if shutil.which("git") is None:
        raise BuildError(f"fetching {repository}: git sources need the git program, which is not installed")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}

    def git(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)

    cloned = git("clone", "--quiet", "--no-checkout", "--", repository, directory)
    if cloned.returncode != 0:
        raise BuildError(f"cloning {repository}: {_last_line(cloned.stderr)}")
    wanted = ref or "HEAD"
    checked = git("checkout", "--quiet", "--detach", wanted, cwd=directory)
    if checked.returncode != 0 and ref:  # a branch of the remote's
        checked = git("checkout", "--quiet", "--detach", f"origin/{ref}", cwd=directory)
    if checked.returncode != 0:
        raise BuildError(f"{repository}: no branch, tag or commit {wanted!r} to check out")
    git("submodule", "update", "--init", "--recursive", "--quiet", cwd=directory)
    commit = git("rev-parse", "HEAD", cwd=directory).stdout.strip()
    if not keep_git_dir:
        shutil.rmtree(os.path.join(directory, ".git"), ignore_errors=True)
    path = os.path.realpath(os.path.join(directory, subdir))
    if path != os.path.realpath(directory) and not path.startswith(os.path.realpath(directory) + os.sep):
        raise InvalidInputError(f"{address}: the subdirectory {subdir!r} leads out of the repository")
    if not os.path.isdir(path):
        raise InvalidInputError(f"{address}: the repository has no directory {subdir!r}")
    return path, commit


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "failed"
