"""``ketch build``: Dockerfile builds on the builder primitives, without a daemon.

Each stage is built in working containers. With ``layers`` (the default, as podman build) every
RUN, COPY and ADD step is committed as an image of its own and recorded in the layer cache under
a key made of everything the step depends on: its parent image, the config so far, the expanded
instruction, the build arguments in scope, and for COPY/ADD the content, modes and owners of every
file it reads. A later build with the same key reuses that image; any difference rebuilds from
that step on. Secrets (``--secret``, ``RUN --mount=type=secret``) and build volumes (``-v``) are
bind-mounted for RUN steps only: they are never in a layer, the config or the history; only a
secret's id is part of a cache key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time

from ketch.builder import dockerfile as parser
from ketch.builder import files, remote
from ketch.builder.cache import BuildCache, RegistryCache
from ketch.builder.context import prepare_context
from ketch.builder.dockerignore import Excluding, IgnoreRules
from ketch.builder.working import Builder
from ketch.errors import (
    BuilderError,
    BuildError,
    BuildStepFailedError,
    InvalidInputError,
    KetchError,
    log_cleanup_failure,
)
from ketch.records import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.runtime.spectypes import Mount

PREDEFINED_ARGS = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
                   "no_proxy", "ALL_PROXY", "all_proxy"}


def platform_args(target: str | None = None) -> dict[str, str]:
    """The automatic platform ARGs (TARGETPLATFORM, TARGETOS, ..., BUILDARCH): BUILD* are this
    machine's, TARGET* ``--platform``'s (``os/arch[/variant]``) or this machine's."""
    from ketch.image.platform import host_platform

    build_os, build_arch, build_variant = host_platform()
    if target:
        parts = target.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInputError(f"invalid --platform {target!r}: want OS/ARCH[/VARIANT]")
        target_os, target_arch, target_variant = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    else:
        target_os, target_arch, target_variant = build_os, build_arch, build_variant
    return {"TARGETPLATFORM": "/".join(p for p in (target_os, target_arch, target_variant) if p),
            "TARGETOS": target_os, "TARGETARCH": target_arch, "TARGETVARIANT": target_variant,
            "BUILDPLATFORM": "/".join(p for p in (build_os, build_arch, build_variant) if p),
            "BUILDOS": build_os, "BUILDARCH": build_arch, "BUILDVARIANT": build_variant}


class BuildOptions(Record):
    """``ketch build``'s flags (podman build's names)."""

    file: str | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    layers: bool = True
    no_cache: bool = False
    squash: bool = False
    squash_all: bool = False
    format: str = "oci"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    iidfile: str | None = None
    pull: str = "missing"
    secrets: dict[str, str] = field(default_factory=dict)  # id -> the file on the host
    volumes: list[str] = field(default_factory=list)
    network: str = "host"
    cap_add: list[str] = field(default_factory=list)
    quiet: bool = False
    remove: bool = True
    force_remove: bool = False
    platform: str | None = None  # OS/ARCH[/VARIANT] for TARGETPLATFORM and friends
    build_contexts: dict[str, str] = field(default_factory=dict)  # name -> dir, URL, docker-image://REF
    ignorefile: str | None = None  # instead of the context's .containerignore/.dockerignore
    outputs: list[str] = field(default_factory=list)  # --output: type=local,dest=DIR | type=tar,dest=FILE | DIR
    cache_from: list[str] = field(default_factory=list)  # registry repositories the layer cache is read from
    cache_to: list[str] = field(default_factory=list)  # and written to
    manifest: str | None = None  # a manifest list the image is added to


class _Stage:
    def __init__(self, index: int, name: str | None, base: str, instructions: list, line: int,
                 platform: str | None = None) -> None:
        self.index, self.name, self.base, self.instructions, self.line = index, name, base, instructions, line
        self.platform = platform  # FROM --platform, unexpanded
        self.image_id: str | None = None


class _At:
    """Where an error is, for :meth:`Build._error`, when no instruction is at hand."""

    def __init__(self, line: int, name: str) -> None:
        self.line, self.name = line, name


class _State:
    """Where a stage stands: the image so far, and what is not in an image yet."""

    def __init__(self, parent: str | None, config: dict, top: dict, global_args: dict | None = None) -> None:
        self.parent = parent
        self.config = config
        self.top = top
        self.history: list[dict] = []
        self.args: dict[str, str] = {}
        self.global_args: dict[str, str | None] = global_args or {}  # ARGs before the first FROM
        self.workdir_pending: str | None = None
        self.cmd_set = False  # a CMD of this stage (an ENTRYPOINT then keeps it)


class Build:
    def __init__(self, store, options: BuildOptions, context_dir: str, dockerfile_text: str,
                 dockerfile_name: str, log=None, context=None, warn=None) -> None:
        self.store = store
        self.builder = Builder(store)
        self.cache = BuildCache(store)
        self.platform_args = platform_args(options.platform)
        self.options = options
        self.context_dir = os.path.realpath(context_dir)
        self.dockerfile_name = dockerfile_name
        self.instructions = parser.parse(dockerfile_text, dockerfile_name)
        self.log = log or (lambda text: None)
        self.pull_context = context
        self.ignore = IgnoreRules.load(self.context_dir, options.ignorefile)
        self.working: list[str] = []  # working containers to remove
        self.secret_dir: str | None = None
        self.fetch_dir: str | None = None  # ADD's downloads and clones, removed when the build ends
        self.fetched: dict = {}  # (address, keep-git-dir) -> (path, Downloaded or None, commit or None)
        self.named_dirs: dict[str, str] = {}  # --build-context names -> their directories
        self.registry_cache: RegistryCache | None = None  # --cache-from/--cache-to's client, made when used
        self.warn = warn or (lambda text: None)
        self.mounted_images: list[str] = []  # --from roots of the current step
        self.step = 0
        self.stage_count = 1
        self.prefix = ""
        self.total = 0
        self.reported: str | None = None  # the image id the report named last
        self.last_step = False

    # -- the build -----------------------------------------------------------------------

    def run(self) -> str:
        from ketch.builder.output import parse_output

        for spec in self.options.outputs:  # (bad flags before any work)
            parse_output(spec)
        for name, value in self.options.build_contexts.items():
            if not value.startswith(("docker-image://", "container-image://")) and not remote.is_url(value) \
                    and not os.path.isdir(value):
                raise InvalidInputError(f"--build-context {name}={value}: not a directory, a URL, docker-image:// "
                                        "or container-image://")
        global_args, stages = self._stages()
        target = self._target(stages)
        self.stage_count = target.index + 1
        try:
            for stage in stages[: target.index + 1]:
                self._build_stage(stage, global_args, stages)
                if stage is not target and self.reported != stage.image_id:
                    self.log(f"{self.prefix}--> {stage.image_id[:11]}")
            image_id = self._finish(target)
            self.log(f"{self.prefix}COMMIT" + (f" {self.options.tags[0]}" if self.options.tags else ""))
            self.log(f"--> {image_id[:11]}")
        except BaseException:
            if self.options.remove or self.options.force_remove:
                self._remove_working()
            raise
        finally:
            for scratch in (self.secret_dir, self.fetch_dir):
                if scratch:
                    shutil.rmtree(scratch, ignore_errors=True)
        self._remove_working()
        for spec in self.options.outputs:
            from ketch.builder.output import export

            export(self.store, image_id, spec)
        if self.options.manifest:
            from ketch.image.manifests import ManifestLists

            ManifestLists(self.store).add_local(self.options.manifest, image_id, create=True)
        if self.options.iidfile:
            with open(self.options.iidfile, "w") as f:
                f.write(f"sha256:{image_id}")
        return image_id

    def _stages(self):
        global_args: dict[str, str | None] = {}
        stages: list[_Stage] = []
        for ins in self.instructions:
            if ins.name == "FROM":
                words = ins.args.split()
                name = None
                if len(words) == 3 and words[1].lower() == "as":
                    name = words[2].lower()
                elif len(words) != 1:
                    raise self._error(ins, "want FROM IMAGE [AS NAME]")
                stages.append(_Stage(len(stages), name, words[0], [], ins.line, ins.flags.get("platform")))
            elif not stages:
                if ins.name != "ARG":
                    raise self._error(ins, "only ARG may come before the first FROM")
                for key, value in parser.key_values(ins.args, "ARG"):
                    global_args[key] = self.options.build_args.get(key, value)
            else:
                stages[-1].instructions.append(ins)
        if not stages:
            raise InvalidInputError(f"{self.dockerfile_name}: no FROM")
        return global_args, stages

    def _target(self, stages: list[_Stage]) -> _Stage:
        if not self.options.target:
            return stages[-1]
        for stage in stages:
            if stage.name == self.options.target.lower():
                return stage
        raise InvalidInputError(f"--target {self.options.target}: no stage of that name in {self.dockerfile_name}")

    def _error(self, ins, text: str) -> InvalidInputError:
        return parser.DockerfileError(f"{self.dockerfile_name}:{ins.line}: {ins.name}: {text}")

    def _build_stage(self, stage: _Stage, global_args: dict, stages: list[_Stage]) -> None:
        variables = {k: v for k, v in global_args.items() if v is not None}
        base = parser.expand(stage.base, variables, filename=self.dockerfile_name, line=stage.line)
        # buildah's report: "[STAGE/STAGES] STEP N/TOTAL: INSTRUCTION" (no prefix with one stage)
        self.prefix = f"[{stage.index + 1}/{self.stage_count}] " if self.stage_count > 1 else ""
        self.total = len(stage.instructions) + 1
        self.log(f"{self.prefix}STEP 1/{self.total}: FROM {base}" + (f" AS {stage.name}" if stage.name else ""))
        earlier = next((s for s in stages[: stage.index] if s.name == base.lower() or str(s.index) == base), None)
        wanted = self._stage_platform(stage, variables)
        if earlier is not None:
            parent = earlier.image_id
        elif base == "scratch":
            parent = None
        else:
            named = self._named_context(base)
            if named is not None and named[0] != "image":
                raise self._error(_At(stage.line, "FROM"), f"build context {base} is a directory, not an image")
            parent = self._base_image(named[1] if named else base, wanted, stage)
        config, top = self._config_of(parent)
        if parent is None and wanted is not None:  # FROM scratch for a platform of its own
            top = {"architecture": wanted[1], "os": wanted[0], **({"variant": wanted[2]} if wanted[2] else {})}
        state = _State(parent, config, top, global_args)
        onbuild = list(config.pop("OnBuild", None) or [])
        instructions = list(stage.instructions)
        if onbuild:
            triggers = parser.parse("FROM scratch\n" + "\n".join(onbuild), f"{base} (ONBUILD)")[1:]
            instructions = triggers + instructions
        container = None if self.options.layers else self._working(state)
        final_stage = stage.index + 1 == self.stage_count
        for number, ins in enumerate(instructions, 2):
            self.step += 1
            self.last_step = final_stage and number == len(instructions) + 1  # its image is the COMMIT's
            self.log(f"{self.prefix}STEP {number}/{max(self.total, number)}: {ins.original}")
            container = self._apply(ins, state, stages, container)
        stage.image_id = self._commit_stage(state, container)

    def _stage_platform(self, stage: _Stage, variables: dict) -> tuple[str, str, str] | None:
        """The platform a stage is built for: its ``FROM --platform`` (``$BUILDPLATFORM`` and the
        other platform ARGs expand there), else ``--platform``; None for no choice (this
        machine's, and whatever the base image is)."""
        from ketch.image.platform import parse_platform

        text = stage.platform
        if text:
            text = parser.expand(text, {**self.platform_args, **variables}, filename=self.dockerfile_name,
                                 line=stage.line)
        text = text or self.options.platform
        if not text:
            return None
        try:
            return parse_platform(text)
        except KetchError as exc:
            raise InvalidInputError(f"{self.dockerfile_name}:{stage.line}: FROM: {exc}") from exc

    def _base_image(self, base: str, wanted: tuple[str, str, str] | None, stage: _Stage) -> str:
        """A stage's base: the store's image, or pulled; for a platform of its own, an image of
        that platform (a local one of another is pulled again for it, as podman does)."""
        from ketch.containers.images import find_or_pull

        if wanted is None:
            return find_or_pull(self.store, base, self.options.pull, self.pull_context).id
        import copy

        from ketch.image.context import SystemContext

        context = (self.pull_context() if callable(self.pull_context) else self.pull_context) or SystemContext()
        context = copy.copy(context)
        context.override_os, context.override_arch = wanted[0], wanted[1]
        context.override_variant = wanted[2] or None
        record = None
        if self.options.pull in ("missing", "never"):
            try:
                record = self.store.lookup(base)
            except KetchError:
                record = None
        if record is not None:
            found = json.loads(record.config)
            # (an image that names no platform is taken as it is, as podman takes it)
            if (found.get("os") or wanted[0], found.get("architecture") or wanted[1]) == (wanted[0], wanted[1]):
                return record.id
            if self.options.pull == "never":
                raise InvalidInputError(f"{base}: the local image is {found.get('os')}/{found.get('architecture')}, "
                                        f"not {'/'.join(p for p in wanted if p)}, and --pull=never")
        try:
            return find_or_pull(self.store, base, "always", context).id
        except KetchError as exc:
            raise BuildError(f"{self.dockerfile_name}:{stage.line}: FROM {base}: no image of it for "
                             f"{'/'.join(p for p in wanted if p)}: {exc}") from exc

    def _config_of(self, image_id: str | None) -> tuple[dict, dict]:
        if image_id is None:
            return {}, {"architecture": self.platform_args["TARGETARCH"], "os": self.platform_args["TARGETOS"],
                        **({"variant": v} if (v := self.platform_args["TARGETVARIANT"]) else {})}
        parsed = json.loads(self.store.lookup(image_id).config)
        top = {k: parsed[k] for k in ("architecture", "os", "variant", "author") if k in parsed}
        return dict(parsed.get("config") or {}), top

    # -- instructions ------------------------------------------------------------------

    def _variables(self, state: _State) -> dict[str, str]:
        env = dict(e.split("=", 1) for e in state.config.get("Env") or [] if "=" in e)
        return {**state.args, **env}

    def _apply(self, ins, state: _State, stages, container):
        expanded = parser.expand(ins.args, self._variables(state), filename=self.dockerfile_name, line=ins.line) \
            if ins.name in parser.EXPANDED else ins.args
        name = ins.name
        config = state.config
        empty_text = None
        if name == "ARG":
            for key, value in parser.key_values(expanded, "ARG"):
                if key in self.options.build_args:
                    state.args[key] = self.options.build_args[key]
                elif value is not None:
                    state.args[key] = parser.expand(value, self._variables(state))
                elif (inherited := state.global_args.get(key)) is not None:
                    state.args[key] = inherited
                elif key in self.platform_args:
                    state.args[key] = self.platform_args[key]
            # buildah's history names the ARGs, not their values (those may be secrets)
            empty_text = "ARG " + " ".join(key for key, _ in parser.key_values(expanded, "ARG"))
        elif name == "ENV":
            env = [e for e in config.get("Env") or []]
            for key, value in parser.key_values(expanded, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value or ''}"]
            config["Env"] = env
            empty_text = f"ENV {ins.args}"  # as written, as buildah's history has it
        elif name == "LABEL":
            labels = dict(config.get("Labels") or {})
            for key, value in parser.key_values(expanded, "LABEL"):
                labels[key] = value or ""
            config["Labels"] = labels
            empty_text = f"LABEL {ins.args}"
        elif name == "MAINTAINER":
            state.top["author"] = expanded
            empty_text = f"MAINTAINER {expanded}"
        elif name == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for port in parser.split_words(expanded):
                number, _, proto = port.partition("/")
                if not number.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                    raise self._error(ins, f"invalid port {port!r}")
                ports[f"{number}/{proto or 'tcp'}"] = {}
            config["ExposedPorts"] = ports
            empty_text = f"EXPOSE {expanded}"
        elif name == "USER":
            config["User"] = expanded.strip()
            empty_text = f"USER {expanded}"
        elif name == "WORKDIR":
            path = expanded.strip()
            if not path.startswith("/"):
                path = os.path.join(config.get("WorkingDir") or "/", path)
            config["WorkingDir"] = os.path.normpath(path)
            state.workdir_pending = config["WorkingDir"]
            empty_text = f"WORKDIR {config['WorkingDir']}"
        elif name == "VOLUME":
            volumes = dict(config.get("Volumes") or {})
            for path in (ins.json if ins.json is not None else parser.split_words(expanded)):
                volumes[path] = {}
            config["Volumes"] = volumes
            empty_text = f"VOLUME {expanded}"
        elif name in ("CMD", "ENTRYPOINT"):
            words = ins.json if ins.json is not None else (config.get("Shell") or ["/bin/sh", "-c"]) + [ins.args]
            config["Cmd" if name == "CMD" else "Entrypoint"] = words
            if name == "ENTRYPOINT" and not state.cmd_set:
                config.pop("Cmd", None)  # an ENTRYPOINT resets an inherited CMD, as Docker does
            if name == "CMD":
                state.cmd_set = True
            empty_text = f"{name} {json.dumps(words)}"
        elif name == "SHELL":
            config["Shell"] = ins.json
            empty_text = f"SHELL {json.dumps(ins.json)}"
        elif name == "STOPSIGNAL":
            from ketch.containers.options import parse_signal

            try:
                parse_signal(expanded.strip())
            except KetchError as exc:
                raise self._error(ins, f"invalid signal {expanded.strip()!r}") from exc
            config["StopSignal"] = expanded.strip()
            empty_text = f"STOPSIGNAL {expanded}"
        elif name == "HEALTHCHECK":
            config["Healthcheck"] = self._healthcheck(ins)
            empty_text = f"HEALTHCHECK {ins.args}"
        elif name == "ONBUILD":
            trigger = expanded.split(None, 1)[0].upper() if expanded.strip() else ""
            if trigger in ("ONBUILD", "FROM", "MAINTAINER") or trigger not in parser.INSTRUCTIONS:
                raise self._error(ins, f"{trigger or 'nothing'} cannot be an ONBUILD trigger")
            config["OnBuild"] = (config.get("OnBuild") or []) + [ins.args]
            empty_text = f"ONBUILD {ins.args}"
        elif name in ("RUN", "COPY", "ADD"):
            return self._layered(ins, expanded, state, stages, container)
        else:
            raise self._error(ins, "not supported")
        state.history.append({"created": _now(), "created_by": f"/bin/sh -c #(nop) {empty_text}", "empty_layer": True})
        if container is not None:
            self.store.update_container_metadata(container, {"config": config, "top": state.top})
        elif self.options.layers:
            self._metadata_step(state)
        return container

    def _metadata_step(self, state: _State) -> None:
        """With layers (podman build's default), an instruction that makes no layer (ENV, CMD...)
        ends in an image of its own too, as buildah's do: reported, and cached like a layered
        step (so a rebuild that changed nothing reaches the very same images)."""
        steps = [h.get("created_by") for h in state.history]
        key = hashlib.sha256(json.dumps(["metadata", state.parent, state.config, state.top, steps],
                                        sort_keys=True).encode()).hexdigest()
        cached = None if self.options.no_cache else self._cached(key)
        if cached:
            self.log(f"{self.prefix}--> Using cache {cached}")
            image_id = cached
        else:
            holder = self._working(state)
            image_id = self._commit(holder, state, "", layer=False)
            self.builder.remove(holder)
            self.working.remove(holder)
            self._remember(key, image_id)
        if not self.last_step:
            self.log(f"{self.prefix}--> {image_id[:11]}")
        self.reported = image_id
        state.parent = image_id
        state.config, state.top = self._config_of(image_id)
        state.history = []

    def _healthcheck(self, ins) -> dict:
        words = ins.args.split()
        if words and words[0].upper() == "NONE":
            return {"Test": ["NONE"]}
        check: dict = {}
        for key, value in (ins.flags or {}).items():
            if key == "retries":
                check["Retries"] = int(value)
            else:
                check[{"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
                       "start-interval": "StartInterval"}[key]] = _duration_ns(value, ins, self)
        if not words or words[0].upper() != "CMD":
            raise self._error(ins, "want HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE")
        rest = ins.args.split(None, 1)[1] if len(words) > 1 else ""
        try:
            parsed = json.loads(rest) if rest.startswith("[") else None
        except ValueError:
            parsed = None
        check["Test"] = ["CMD"] + parsed if isinstance(parsed, list) else ["CMD-SHELL", rest]
        return check

    # -- layered steps: RUN, COPY, ADD ------------------------------------------------------

    def _layered(self, ins, expanded: str, state: _State, stages, container):
        try:
            return self._layered_step(ins, expanded, state, stages, container)
        finally:
            self._release_images()  # what --from mounted, for the key or the copy

    def _layered_step(self, ins, expanded: str, state: _State, stages, container):
        inputs = self._inputs(ins, expanded, state, stages)
        steps = [h.get("created_by") for h in state.history]  # not their times: a rebuild must match
        key = hashlib.sha256(json.dumps([state.parent, state.config, state.top, steps, ins.name, ins.flags,
                                         expanded if ins.name != "RUN" else ins.args, ins.heredocs, inputs],
                                        sort_keys=True).encode()).hexdigest()
        created_by = (f"/bin/sh -c {ins.args}" if ins.name == "RUN" and ins.json is None else
                      f"/bin/sh -c #(nop) {ins.name} {expanded}" if ins.name != "RUN" else
                      f"/bin/sh -c {json.dumps(ins.json)}")
        if ins.name in ("COPY", "ADD") and not ins.heredocs:
            # Docker's and buildah's record: "COPY file:DIGEST in DEST" (dir:, or multi: for
            # several sources); the digest is ketch's own of the content, not buildah's
            found, destination, _ = self._sources(ins, expanded, state, stages)
            parts = inputs[0]
            if len(parts) == 1:
                kind = "dir" if os.path.isdir(found[0].path) and not os.path.islink(found[0].path) else "file"
                name, _, content = parts[0]  # (a git checkout's content is its commit, in its name)
                digest = content or hashlib.sha256(name.encode()).hexdigest()
            else:
                kind, digest = "multi", hashlib.sha256(json.dumps(parts).encode()).hexdigest()
            created_by = f"/bin/sh -c #(nop) {ins.name} {kind}:{digest} in {destination} "  # (buildah's space)
        if ins.name == "RUN" and state.args:
            # Docker's and buildah's record of the build arguments a RUN saw: "|N K=V ... COMMAND"
            created_by = f"|{len(state.args)} " + " ".join(f"{k}={v}" for k, v in state.args.items()) + \
                " " + created_by
        if self.options.layers:
            if not self.options.no_cache:
                cached = self._cached(key)
                if cached:
                    self.log(f"{self.prefix}--> Using cache {cached}")
                    if not self.last_step:
                        self.log(f"{self.prefix}--> {cached[:11]}")
                    self.reported = cached
                    state.parent = cached
                    state.config, state.top = self._config_of(cached)
                    state.history = []
                    return None
            container = self._working(state)
        # A WORKDIR is made by the next step that needs it, owned by the USER then (buildah's
        # order: a RUN's before it runs, a COPY's after the copy, whose --chown may make it first)
        # (and a RUN makes the VOLUMEs declared so far, root's, as buildah's RUN does)
        if ins.name == "RUN":
            self._prepare_workdir(container, state, volumes=True)
            self._run(ins, state, stages, container)
        else:
            try:
                self._copy(ins, expanded, state, stages, container)
            except (BuilderError, OSError) as exc:
                text = str(exc) if isinstance(exc, BuilderError) else f"copying: {exc.strerror}"
                raise self._error(ins, text) from exc
            self._prepare_workdir(container, state)
        if not self.options.layers:
            history = self.store.container(container)
            meta = json.loads(history["metadata"])
            meta_history = list(meta.get("history") or [])
            meta_history.append({"created": _now(), "created_by": created_by, "pending_layer": True})
            self.store.update_container_metadata(container, {"history": meta_history})
            return container
        image_id = self._commit(container, state, created_by)
        if not self.last_step:
            self.log(f"{self.prefix}--> {image_id[:11]}")
        self.reported = image_id
        self._remember(key, image_id)
        self.builder.remove(container)
        self.working.remove(container)
        state.parent = image_id
        state.config, state.top = self._config_of(image_id)
        state.history = []
        return None

    def _working(self, state: _State) -> str:
        name = f"ketch-build-{os.getpid()}-{os.urandom(4).hex()}"
        self.builder.from_image(state.parent if state.parent else "scratch", name=name, pull="never")
        container = self.store.container(name)["id"]
        self.working.append(container)
        self.store.update_container_metadata(container, {"config": state.config, "top": state.top,
                                                         "history": list(state.history)})
        return container

    def _commit(self, container: str, state: _State, created_by: str, *, layer: bool = True, name=None,
                squash: bool = False) -> str:
        from ketch.containers.commit import commit

        return commit(self.store, container, state.parent, name=name, fmt=self.options.format, created_by=created_by,
                      settings=state.config, pending_history=state.history, top_level=state.top, layer=layer,
                      squash=squash)

    def _cached(self, key: str) -> str | None:
        """The image a step with this key made: the store's cache, else ``--cache-from``'s
        repositories (the image tagged with the key there, pulled: buildah's layout of a
        registry cache, so the two share one)."""
        found = self.cache.lookup(key)
        if found is not None or not self.options.cache_from:
            return found
        from ketch.errors import NotFoundError

        for repository in self.options.cache_from:
            try:
                image_id = self._registry_cache().fetch(repository, key)
            except NotFoundError:
                continue
            except KetchError as exc:
                self.warn(f"--cache-from {repository}: {exc}")
                continue
            self.log(f"{self.prefix}--> Cache pulled from remote {repository}:{key}")
            self.cache.remember(key, image_id)
            return image_id
        return None

    def _remember(self, key: str, image_id: str) -> None:
        self.cache.remember(key, image_id)
        for repository in self.options.cache_to:
            self.log(f"{self.prefix}--> Pushing cache {repository}:{key}")  # (buildah's words)
            try:
                self._registry_cache().store_image(repository, key, image_id)
            except KetchError as exc:
                self.warn(f"--cache-to {repository}: {exc}")

    def _registry_cache(self) -> RegistryCache:
        if self.registry_cache is None:
            self.registry_cache = RegistryCache(self.store, self.pull_context)
        return self.registry_cache

    def _prepare_workdir(self, container: str, state: _State, *, volumes: bool = False) -> None:
        declared = list(state.config.get("Volumes") or {}) if volumes else []
        if not state.workdir_pending and not declared:
            return
        root = self.builder.mount(container)
        try:
            for path in declared:
                files.make_dirs(root, path, None)
            if state.workdir_pending:
                files.make_dirs(root, state.workdir_pending, self._owner(root, state.config.get("User") or "0"))
        finally:
            self.builder.unmount(container)
        state.workdir_pending = None

    @staticmethod
    def _owner(root: str, spec: str) -> tuple[int, int]:
        """``user[:group]`` as buildah reads it for files it makes (``--chown``, a WORKDIR): a
        user's primary group from the image's passwd, or the uid's own number without one."""
        from ketch.containers import users

        resolved = users.resolve(root, spec)
        user_part, _, group_part = spec.partition(":")
        if not group_part and user_part.isdigit() and not users.known_uid(root, int(user_part)):
            return resolved.uid, resolved.uid
        return resolved.uid, resolved.gid

    def _commit_stage(self, state: _State, container) -> str:
        if container is not None:  # without layers: one commit of the whole stage
            meta = json.loads(self.store.container(container)["metadata"])
            pending = [h for h in meta.get("history") or [] if h.get("pending_layer")]
            return self._commit(container, state, "; ".join(h["created_by"] for h in pending)
                                or "/bin/sh -c #(nop) build", layer=bool(pending))
        if state.history or state.parent is None:
            # the steps that made no layer (ENV, CMD...) end in an image of their own, cached like a
            # layered step: a rebuild that changed nothing gives the very same image
            steps = [h.get("created_by") for h in state.history]
            key = hashlib.sha256(json.dumps(["metadata", state.parent, state.config, state.top, steps],
                                            sort_keys=True).encode()).hexdigest()
            cached = None if self.options.no_cache or not self.options.layers else self._cached(key)
            if cached:
                return cached
            holder = self._working(state)
            image_id = self._commit(holder, state, "", layer=False)
            self.builder.remove(holder)
            self.working.remove(holder)
            if self.options.layers:
                self._remember(key, image_id)
            return image_id
        return state.parent

    def _finish(self, stage: _Stage) -> str:
        image_id = stage.image_id
        assert image_id is not None  # (the target stage was built)
        config, top = self._config_of(image_id)
        extra_labels = self.options.labels or {}
        if extra_labels or self.options.annotations or self.options.squash_all or self.options.squash:
            key = hashlib.sha256(json.dumps(["finish", image_id, extra_labels, self.options.annotations,
                                             self.options.squash_all, self.options.squash],
                                            sort_keys=True).encode()).hexdigest()
            cached = None if self.options.no_cache or not self.options.layers else self._cached(key)
            if cached:
                for tag in self.options.tags:
                    self.store.tag(cached, self.store.normalize_name(tag))
                return cached
            state = _State(image_id, config, top)
            if extra_labels:
                config["Labels"] = {**(config.get("Labels") or {}), **extra_labels}
            if self.options.annotations:
                state.top = {**top, "annotations": {**(top.get("annotations") or {}), **self.options.annotations}}
            holder = self._working(state)
            state.parent = image_id
            if self.options.squash_all:
                image_id = self._commit(holder, state, "/bin/sh -c #(nop) squashed", squash=True)
            else:
                image_id = self._commit(holder, state, "", layer=False)
            self.builder.remove(holder)
            self.working.remove(holder)
            if self.options.layers:
                self._remember(key, image_id)
        for tag in self.options.tags:
            self.store.tag(image_id, self.store.normalize_name(tag))
        return image_id

    def _remove_working(self) -> None:
        for container in list(self.working):
            try:
                self.builder.remove(container)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"removing working container {container[:12]}", exc)
            self.working.remove(container)

    # -- RUN ----------------------------------------------------------------------------

    def _run(self, ins, state: _State, stages, container: str) -> None:
        self._check_runnable(ins, state)
        shell = state.config.get("Shell") or ["/bin/sh", "-c"]
        if ins.heredocs:
            name, body, expand_body = ins.heredocs[0]
            if expand_body:
                body = parser.expand(body, self._variables(state))
            command_text = ins.args.replace(f"<<-{name}", "").replace(f"<<{name}", "").replace(f"<<\"{name}\"", "") \
                .replace(f"<<'{name}'", "").strip()
            command = shell + [body] if not command_text else shell + [f"{command_text} <<'{name}'\n{body}{name}"]
        elif ins.json is not None:
            command = ins.json
        else:
            command = shell + [ins.args]
        env = [f"{k}={v}" for k, v in state.args.items()]
        for key in PREDEFINED_ARGS:
            if key in self.options.build_args and key not in state.args:
                env.append(f"{key}={self.options.build_args[key]}")
        mounts = self._run_mounts(ins, state, stages)
        network = ins.flags.get("network", "default")
        if network == "default":
            network = self.options.network
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        try:
            status = self.builder.run(container, command, env=env, volumes=list(self.options.volumes),
                                      oci_mounts=mounts, network=network, cap_add=self.options.cap_add,
                                      stdio=(null, null if self.options.quiet else self._step_output(), 2))
        except KetchError as exc:
            raise BuildError(f"{self.dockerfile_name}:{ins.line}: step {self.step}: {ins.original}: {exc}") from exc
        finally:
            os.close(null)
        if status != 0:
            # podman build's words, and its status: the step's own
            raise BuildStepFailedError(f'building at STEP "{ins.original}" ({self.dockerfile_name}:{ins.line}): '
                                       f"while running runtime: exit status {status}", status)

    def _step_output(self) -> int:
        """Where a RUN's output goes: stdout, or stderr when ``--output -`` writes the tar there."""
        from ketch.builder.output import parse_output

        return 2 if any(parse_output(spec) == ("tar", "-") for spec in self.options.outputs) else 1

    def _check_runnable(self, ins, state: _State) -> None:
        """A RUN in an image of another architecture needs an emulator registered with the
        kernel (binfmt_misc, as qemu-user-static registers one); without one, say so."""
        from ketch.image.platform import host_platform

        arch = state.top.get("architecture")
        host = host_platform()[1]
        if not arch or arch == host or (host, arch) in _NATIVE or _emulator_registered(arch):
            return
        raise BuildError(f"{self.dockerfile_name}:{ins.line}: RUN: the image is for {arch} and this machine runs "
                         f"{host}: running it needs an emulator, and none is registered for {arch} "
                         "(binfmt_misc; Debian's qemu-user-static registers them)")

    def _run_mounts(self, ins, state: _State, stages) -> list[Mount]:
        specs = ins.flags.get("mount")
        if not specs:
            return []
        out: list[Mount] = []
        for spec in specs if isinstance(specs, list) else [specs]:
            fields = {}
            flags = []
            for item in spec.split(","):
                key, sep, value = item.partition("=")
                if sep:
                    fields[key] = value
                else:
                    flags.append(key)
            kind = fields.pop("type", "bind")
            target = fields.pop("target", fields.pop("dst", fields.pop("destination", "")))
            readonly = "ro" in flags or "readonly" in flags or fields.pop("ro", fields.pop("readonly", "")) == "true"
            if kind == "secret":
                secret_id = fields.pop("id", "") or os.path.basename(target)
                if not secret_id:
                    raise self._error(ins, "a secret mount needs id= or target=")
                source = self.options.secrets.get(secret_id)
                required = fields.pop("required", "false") == "true"
                if source is None:
                    if required:
                        raise self._error(ins, f"secret {secret_id!r} is required and not given with --secret")
                    continue
                mode = int(fields.pop("mode", "0400"), 8)
                uid, gid = int(fields.pop("uid", "0")), int(fields.pop("gid", "0"))
                private = self._secret_copy(secret_id, source, mode, uid, gid)
                out.append({"destination": target or f"/run/secrets/{secret_id}", "type": "bind", "source": private,
                            "options": ["rbind", "ro", "rprivate", "nosuid", "nodev", "noexec"]})
            elif kind == "cache":
                cache_id = fields.pop("id", target)
                if not target:
                    raise self._error(ins, "a cache mount needs target=")
                directory = str(self.store.root / "build-cache" / hashlib.sha256(cache_id.encode()).hexdigest()[:32])
                os.makedirs(directory, exist_ok=True)
                out.append({"destination": target, "type": "bind", "source": directory,
                            "options": ["rbind", "ro" if readonly else "rw", "rprivate"]})
            elif kind == "tmpfs":
                if not target:
                    raise self._error(ins, "a tmpfs mount needs target=")
                size = fields.pop("size", fields.pop("tmpfs-size", ""))
                out.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev"] + ([f"size={size}"] if size else [])})
            elif kind == "bind":
                source_rel = fields.pop("source", fields.pop("src", "/"))
                origin = fields.pop("from", None)
                if origin:
                    root = self._root_of(origin, stages, ins)
                    from ketch.runtime.paths import resolve_in_root

                    source = resolve_in_root(root, source_rel)
                else:
                    source = self._context_path(source_rel, ins)
                if not target:
                    raise self._error(ins, "a bind mount needs target=")
                out.append({"destination": target, "type": "bind", "source": source,
                            "options": ["rbind", "ro" if "rw" not in flags and fields.get("rw") != "true" else "rw",
                                        "rprivate"]})
            else:
                raise self._error(ins, f"--mount type={kind} is not one of bind, cache, secret, tmpfs")
        return out

    def _secret_copy(self, secret_id: str, source: str, mode: int, uid: int, gid: int) -> str:
        """The secret, copied to a private file with the mode the mount asks for (0400)."""
        if self.secret_dir is None:
            self.secret_dir = tempfile.mkdtemp(prefix="ketch-secrets-", dir=str(self.store.runroot))
            os.chmod(self.secret_dir, 0o700)
        path = os.path.join(self.secret_dir, hashlib.sha256(secret_id.encode()).hexdigest()[:16])
        if not os.path.exists(path):
            with open(source, "rb") as src, open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return path

    # -- COPY and ADD ---------------------------------------------------------------------

    def _root_of(self, origin: str, stages, ins) -> str:
        """The root file system of an earlier stage, a named build context's directory, or an
        image (mounted until the step ends)."""
        stage = next((s for s in stages if s.name == origin.lower() or str(s.index) == origin), None)
        if stage is not None:
            if stage.image_id is None:
                raise self._error(ins, f"stage {origin} is not built before this step")
            image_id = stage.image_id
        else:
            kind, value = self._named_context(origin, ins) or ("image", origin)
            if kind == "dir":
                return value
            from ketch.containers.images import find_or_pull

            image_id = find_or_pull(self.store, value, self.options.pull, self.pull_context).id
        path = str(self.store.mount_image(image_id))
        self.mounted_images.append(image_id)
        return path

    def _named_context(self, name: str, ins=None) -> tuple[str, str] | None:
        """``--build-context NAME=VALUE``: ("image", reference) for ``docker-image://`` and
        ``container-image://``, ("dir", path) for a directory, a git repository or a tarball URL
        (fetched once a build); None when there is no such context."""
        value = self.options.build_contexts.get(name) or self.options.build_contexts.get(name.lower())
        if value is None:
            return None
        for scheme in ("docker-image://", "container-image://"):
            if value.startswith(scheme):
                return "image", value[len(scheme):]
        if name not in self.named_dirs:
            if os.path.isdir(value):
                self.named_dirs[name] = os.path.realpath(value)
            elif remote.is_url(value):
                where = os.path.join(self._fetch_dir(), f"context-{len(self.named_dirs)}")
                try:
                    self.named_dirs[name] = os.path.realpath(prepare_context(value, where))
                except KetchError as exc:
                    raise InvalidInputError(f"--build-context {name}: {exc}") from exc
            else:
                raise InvalidInputError(f"--build-context {name}={value}: not a directory, a URL, docker-image:// "
                                        "or container-image://")
        return "dir", self.named_dirs[name]

    def _fetch_dir(self) -> str:
        if self.fetch_dir is None:
            self.fetch_dir = tempfile.mkdtemp(prefix="ketch-fetch-", dir=str(self.store.runroot))
        return self.fetch_dir

    def _context_path(self, relative: str, ins) -> str:
        path = os.path.normpath(os.path.join(self.context_dir, relative.lstrip("/")))
        if path != self.context_dir and not path.startswith(self.context_dir + os.sep):
            raise self._error(ins, f"{relative} is outside the build context")
        real = os.path.realpath(path)
        if real != self.context_dir and not real.startswith(self.context_dir + os.sep):
            raise self._error(ins, f"{relative} leads outside the build context")
        return path

    def _sources(self, ins, expanded: str, state: _State, stages) -> tuple[list[_Source], str, list[str]]:
        """Every source of a COPY/ADD (after ``--exclude``), and the destination."""
        words = ins.json if ins.json is not None else parser.split_words(expanded)
        if ins.heredocs:
            words = [w for w in words if not w.startswith("<<")]
            return [], (words[-1] if words else ""), words
        if len(words) < 2:
            raise self._error(ins, "want SOURCE... DESTINATION")
        *sources, destination = words
        origin = ins.flags.get("from")
        checksum = ins.flags.get("checksum")
        if checksum and not all(s.startswith(("http://", "https://")) and not remote.is_git(s) for s in sources):
            raise self._error(ins, "--checksum is for http(s) sources only")
        excludes = ins.flags.get("exclude") or []
        exclude = IgnoreRules.from_patterns(excludes if isinstance(excludes, list) else [excludes])
        parents = ins.flags.get("parents") == "true"
        if parents and ins.name != "COPY":
            raise self._error(ins, "--parents is a flag of COPY")
        found: list[_Source] = []
        for source in sources:
            if remote.is_url(source):
                if ins.name == "COPY" or origin:
                    raise self._error(ins, f"{source}: a URL is a source of ADD only (not COPY or --from)")
                found.append(self._fetched(ins, source, checksum))
                continue
            if origin:
                from ketch.runtime.paths import resolve_in_root

                root = self._root_of(origin, stages, ins)
                named_dir = root in self.named_dirs.values()  # (a context's files: copied as the context's are)
                pattern = resolve_in_root(root, source)
                matches = sorted(files.glob(pattern)) if any(c in source for c in "*?[") else [pattern]
                matches = [m for m in matches if not exclude.ignored(os.path.relpath(m, root))]
                if not matches or not all(os.path.lexists(m) for m in matches):
                    raise self._error(ins, f"{source}: no such file or directory in {origin}")
                for m in matches:
                    inside = os.path.relpath(m, root)
                    found.append(_Source(m, "" if named_dir else None, f"{origin}:{inside}",
                                         _kept(source, inside) if parents else None,
                                         Excluding(None, exclude, None)))
            else:
                pattern = self._context_path(source, ins)
                matches = sorted(files.glob(pattern)) if any(c in source for c in "*?[") else [pattern]
                matches = [m for m in matches if not self.ignore.ignored(os.path.relpath(m, self.context_dir))
                           and not exclude.ignored(os.path.relpath(m, self.context_dir))]
                if not matches or not all(os.path.lexists(m) for m in matches):
                    raise self._error(ins, f"{source}: no such file or directory in the build context")
                for m in matches:
                    relative = os.path.relpath(m, self.context_dir)
                    found.append(_Source(m, relative, relative, _kept(source, relative) if parents else None,
                                         Excluding(self.ignore, exclude, relative)))
        return found, destination, sources

    def _fetched(self, ins, source: str, checksum: str | None) -> _Source:
        """ADD's remote source, fetched once a build: a git repository's tree (copied as a
        context directory is), or a file downloaded over http(s)."""
        key = (source, ins.flags.get("keep-git-dir"))
        if key not in self.fetched:
            where = os.path.join(self._fetch_dir(), str(len(self.fetched)))
            try:
                if remote.is_git(source):
                    path, commit = remote.clone(source, where, keep_git_dir=ins.flags.get("keep-git-dir") == "true")
                    self.fetched[key] = (path, None, commit)
                else:
                    downloaded = remote.download(source, where)
                    self.fetched[key] = (downloaded.path, downloaded, None)
            except KetchError as exc:
                raise self._error(ins, str(exc)) from exc
        path, downloaded, commit = self.fetched[key]
        if checksum and downloaded is not None:
            try:
                remote.check_checksum(source, checksum, downloaded.digest)
            except KetchError as exc:
                raise self._error(ins, str(exc)) from exc
        # a checkout is known by its commit (its .git directory differs from clone to clone)
        return _Source(path, "", f"{source}@{commit}" if commit else source, None, None, downloaded,
                       pinned=commit is not None)

    def _inputs(self, ins, expanded: str, state: _State, stages) -> list:
        """What a step reads, for its cache key (file contents, modes, owners; secret ids only)."""
        if ins.name == "RUN":
            used = sorted(state.args.items())
            secrets = []
            specs = ins.flags.get("mount") or []
            for spec in specs if isinstance(specs, list) else [specs]:
                if "type=secret" in spec:
                    secrets.append(spec)  # the id, never the content
                if "type=bind" in spec or ("type=" not in spec and "from=" not in spec):
                    source = dict(p.partition("=")[::2] for p in spec.split(",")).get("source", "/")
                    path = self._context_path(source, ins)
                    secrets.append(files.tree_digest(path, self.ignore, os.path.relpath(path, self.context_dir)))
            return [used, secrets, self.options.volumes]
        found, destination, _ = self._sources(ins, expanded, state, stages)
        digests = [[source.name, source.keep, "" if source.pinned else
                    files.tree_digest(source.path, source.ignore, source.relative)] for source in found]
        return [digests, destination, [h[1][:64] for h in ins.heredocs]]

    def _copy(self, ins, expanded: str, state: _State, stages, container: str) -> None:
        from ketch.runtime.paths import resolve_in_root

        found, destination, _ = self._sources(ins, expanded, state, stages)
        chown = ins.flags.get("chown")
        chmod = ins.flags.get("chmod")
        if chmod is not None and not re.fullmatch(r"[0-7]{3,4}", chmod):
            raise self._error(ins, f"invalid --chmod {chmod!r}")
        variables = self._variables(state)
        root = self.builder.mount(container)
        try:
            owner = self._owner(root, parser.expand(chown, variables)) if chown else None
            workdir = state.config.get("WorkingDir") or "/"
            dest = destination if destination.startswith("/") else os.path.join(workdir, destination)
            if os.path.basename(dest) in (".", ".."):
                dest += "/"  # (COPY x . : into the directory)
            # buildah's owners: missing directories on the way to the destination are made 0755
            # and owned by --chown's user (root without it); --chmod is for what is copied only
            parent_of = os.path.dirname(dest.rstrip("/")) or "/"
            if ins.heredocs:
                for name, body, expand_body in ins.heredocs:
                    text = parser.expand(body, variables) if expand_body else body
                    if dest.endswith("/"):
                        path = os.path.join(files.make_dirs(root, dest, owner), name)
                    else:
                        path = os.path.join(files.make_dirs(root, parent_of, owner), os.path.basename(dest))
                    with open(path, "w") as f:
                        f.write(text)
                    os.chown(path, *(owner or (0, 0)))
                    os.chmod(path, int(chmod, 8) if chmod else 0o644)
                return
            target = resolve_in_root(root, dest)
            into = dest.endswith("/") or len(found) > 1 or os.path.isdir(target)
            if len(found) > 1 and not dest.endswith("/"):
                raise self._error(ins, "with several sources the destination must end in /")
            for source in found:
                path, from_context = source.path, source.relative is not None
                if source.keep is not None:  # COPY --parents: the source's own path, under the destination
                    kept_dir = os.path.dirname(source.keep)
                    where = os.path.join(dest, kept_dir) if kept_dir else dest
                    if os.path.isdir(path) and not os.path.islink(path):
                        where = os.path.join(dest, source.keep)
                        files.copy_tree(path, files.make_dirs(root, where, owner), source.ignore, source.relative,
                                        owner, chmod, from_context=from_context)
                    else:
                        to = os.path.join(files.make_dirs(root, where, owner), os.path.basename(path))
                        files.copy_file(path, to, owner, chmod, from_context=from_context)
                    continue
                if source.download is not None:  # ADD URL: 0600 (or --chmod), never unpacked, the server's time
                    to = os.path.join(files.make_dirs(root, dest, owner), source.download.name) if into else \
                        os.path.join(files.make_dirs(root, parent_of, owner), os.path.basename(dest))
                    files.copy_file(path, to, owner, chmod or "600", from_context=True)
                    if source.download.mtime is not None:
                        os.utime(to, (source.download.mtime, source.download.mtime))
                    continue
                if ins.name == "ADD" and os.path.isfile(path) and files.is_archive(path):
                    files.unpack(path, files.make_dirs(root, dest, owner))
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    files.copy_tree(path, files.make_dirs(root, dest, owner), source.ignore, source.relative,
                                    owner, chmod, from_context=from_context)
                elif into:
                    to = os.path.join(files.make_dirs(root, dest, owner), os.path.basename(path))
                    files.copy_file(path, to, owner, chmod, from_context=from_context)
                else:
                    files.make_dirs(root, parent_of, owner)
                    files.copy_file(path, resolve_in_root(root, dest), owner, chmod, from_context=from_context)
        finally:
            self.builder.unmount(container)

    def _release_images(self) -> None:
        for image_id in self.mounted_images:
            self.store.unmount_image(image_id)
        self.mounted_images = []


class _Source:
    """One source of a COPY/ADD: its host ``path``; ``relative``, its path in the build context
    (or "" for a named context, a git checkout, a download; None for an image's file, whose
    owners are kept); ``name``, what the cache key calls it; ``keep``, the path kept under the
    destination (``--parents``); ``ignore``, the rules for a directory's copy (the context's
    ignore file and ``--exclude``); ``download``, for ADD of a URL."""

    __slots__ = ("path", "relative", "name", "keep", "ignore", "download", "pinned")

    def __init__(self, path: str, relative: str | None, name: str, keep: str | None, ignore,
                 download: remote.Downloaded | None = None, *, pinned: bool = False) -> None:
        self.path, self.relative, self.name, self.keep = path, relative, name, keep
        self.ignore, self.download = ignore, download
        self.pinned = pinned  # its name says all of its content (a git commit)


def _kept(pattern: str, matched: str) -> str:
    """COPY --parents: the part of a source's path kept under the destination: all of it, or
    what follows a ``/./`` pivot in the pattern (``src/./app/a.txt`` keeps ``app/a.txt``)."""
    if "/./" in "/" + pattern.lstrip("/"):
        pivot = ("/" + pattern.lstrip("/")).index("/./")
        depth = len([p for p in pattern.lstrip("/")[:pivot].split("/") if p and p != "."])
        return "/".join(matched.split("/")[depth:])
    return os.path.normpath(matched)


# (host, image) architectures whose programs the host's kernel runs as they are
_NATIVE = {("amd64", "386")}
_QEMU_NAMES = {"arm64": "aarch64", "arm": "arm", "386": "i386", "amd64": "x86_64", "ppc64le": "ppc64le",
               "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64el", "loong64": "loongarch64"}


def _emulator_registered(arch: str) -> bool:
    name = _QEMU_NAMES.get(arch, arch)
    try:
        with open(f"/proc/sys/fs/binfmt_misc/qemu-{name}") as f:
            return f.readline().strip() == "enabled"
    except OSError:
        return False


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def _duration_ns(text: str, ins, build) -> int:
    from ketch.builder.working import _duration_ns as parse

    try:
        return parse(text, "healthcheck")
    except InvalidInputError as exc:
        raise build._error(ins, f"invalid duration {text!r}") from exc


def build(store, context: str, options: BuildOptions, *, log=None, pull_context=None, warn=None) -> str:
    """``ketch build``: the image id of the target stage."""
    with store.staging_dir("build-context") as staging:
        context_dir = prepare_context(context, staging)
        name = options.file or next((n for n in ("Containerfile", "Dockerfile")
                                     if os.path.exists(os.path.join(context_dir, n))), "Dockerfile")
        if options.file and not os.path.isabs(name) and name != "-" and os.path.exists(name):
            path = os.path.abspath(name)  # -f is relative to where ketch runs, as for buildah and podman
        else:
            path = name if os.path.isabs(name) or name == "-" else os.path.join(context_dir, name)
        if name == "-":
            import sys

            text = sys.stdin.read()
        else:
            try:
                with open(path) as f:
                    text = f.read()
            except OSError as exc:
                raise InvalidInputError(f"{path}: {exc.strerror}") from exc
        return Build(store, options, context_dir, text, os.path.basename(path), log=log, context=pull_context,
                     warn=warn).run()
