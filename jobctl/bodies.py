"""Request bodies built from the options' values: a new job (POST /v1/jobs), a job's changes
(PATCH /v1/jobs/{id}), a recipe's fields, and the parts they share (the schedule, the
retry policy, explicit resources). What was not given is left out, for the daemon's
defaults or the current values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

# retry_options' values that make a policy (--no-retry removes one)
RETRY_OPTIONS = (
    "attempts",
    "backoff",
    "retry_on_exit",
    "retry_on_timeout",
    "no_retry_on_infrastructure",
)


def new_job_body(
    recipe: str | None, image: str | None, command: Sequence[str], options: Mapping[str, Any]
) -> dict[str, Any]:
    """`run`'s POST /v1/jobs body: the job of an IMAGE, or of a --recipe (then every argument
    is the command), with its queueing options."""
    if recipe is not None and image is not None:
        command = (image, *command)  # with a recipe, every argument is the command
    body = job_body(
        image=image if recipe is None else None,
        command=command,
        env=tuple(env_from(options).items()),
        plan=options["plan"],
        timeout=options["timeout"],
        name=options["name"],
        labels=options["label"],
        network=options["network"],
        kind=options["kind"],
        ports=options["port"],
        when=schedule_from(options),
        retry=retry_from(None, options),
    )
    queueing = {"resources": resources_from(options), "priority": options["priority"]}
    body.update({k: v for k, v in queueing.items() if v is not None})
    body.update(data_fields(options, replacing=False))
    body.update(secret_fields(options))
    body.update(ssh_fields(options))
    if options["max_pending"] is not None:
        body["maxPendingSeconds"] = options["max_pending"]
    body.update(workflow_fields(options))
    if recipe is not None:
        body["recipe"] = recipe
    if options.get("project"):
        body["project"] = options["project"]
    return body


def workflow_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """--after ID[:ok|any|notok] (repeatable) and --array INDICES[%N] (Slurm's syntax)."""
    fields: dict[str, Any] = {}
    if options.get("after"):
        fields["after"] = [_dependency(given) for given in options["after"]]
    if options.get("array"):
        indices, _, bound = options["array"].partition("%")
        fields["array"] = {"indices": indices}
        if bound:
            if not bound.isdigit() or int(bound) < 1:
                raise click.BadParameter(f"{bound!r}: the parallelism after % is a number")
            fields["array"]["parallelism"] = int(bound)
    return fields


def _dependency(given: str) -> dict[str, str]:
    target, _, condition = given.partition(":")
    if condition and condition not in ("ok", "any", "notok"):
        raise click.BadParameter(f"{given!r}: the condition after : is ok, any or notok")
    return {"id": target, "condition": condition or "ok"}


def job_body(
    *,
    image: str | None,
    command: Sequence[str],
    env: Sequence[tuple[str, str]],
    plan: str | None,
    timeout: int | None,
    name: str | None,
    labels: Sequence[tuple[str, str]],
    network: str | None,
    kind: str | None = None,
    ports: Sequence[int] = (),
    when: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """POST /v1/jobs's body; what was not given is left out for the daemon's defaults.
    `when`: the schedule's fields; `retry`: the retry policy."""
    optional = {
        "command": list(command),
        "plan": plan,
        "timeoutSeconds": timeout,
        "name": name,
        "network": network,
        "kind": kind,
        "ports": list(ports),
        "retry": retry,
        **(when or {}),
    }
    body: dict[str, Any] = {"image": image} if image else {}
    body.update({"env": dict(env), "labels": dict(labels)})
    body.update({k: v for k, v in optional.items() if v})
    return body


def job_changes(options: Mapping[str, Any]) -> dict[str, Any]:
    """`update`'s PATCH /v1/jobs/{id} body, but for the retry policy (which merges into the
    job's): only what was given, each value replacing the job's whole."""
    given: dict[str, Any] = {
        "image": options["image"],
        "plan": options["plan"],
        "env": env_from(options) if options["env"] or options["env_file"] else None,
        "timeoutSeconds": options["timeout"],
        "name": options["name"],
        "labels": dict(options["label"]) if options["label"] else None,
        "network": options["network"],
        "kind": options["kind"],
        "ports": list(options["port"]) if options["port"] else None,
        "command": list(options["command"]) if options["command"] else None,
        **schedule_from(options),
    }
    body = {k: v for k, v in given.items() if v is not None}
    body.update(data_fields(options, replacing=True))
    body.update(secret_fields(options))
    body.update(ssh_fields(options))
    if options["no_schedule"]:
        body["schedule"] = None
    return body


def env_from(options: Mapping[str, Any]) -> dict[str, str]:
    """The environment --env-file and --env give: the files in order, then each --env."""
    env: dict[str, str] = {}
    for values in options.get("env_file", ()):
        env.update(values)
    env.update(dict(options["env"]))
    return env


def ssh_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """sshKeys (every key of each --ssh-key file) and allowedIps, when given."""
    fields: dict[str, Any] = {}
    if options.get("ssh_key"):
        fields["sshKeys"] = [key for keys in options["ssh_key"] for key in keys]
    if options.get("allow_ip"):
        fields["allowedIps"] = list(options["allow_ip"])
    return fields


def secret_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """secretEnv from --secret-env-file and --secret-env (the files first), when given."""
    if not (options.get("secret_env") or options.get("secret_env_file")):
        return {}
    secret: dict[str, str] = {}
    for values in options.get("secret_env_file", ()):
        secret.update(values)
    secret.update(dict(options.get("secret_env", ())))
    return {"secretEnv": secret}


def data_fields(options: Mapping[str, Any], *, replacing: bool) -> dict[str, Any]:
    """Volumes, a job's inputs (uploads' slugs by now), working directory, user and output
    limit, as given (--no-volumes, --no-inputs: none, when replacing)."""
    for listed, none in (("volume", "no_volumes"), ("input", "no_inputs")):
        if replacing and options.get(none) and options.get(listed):
            raise click.UsageError(f"--{listed} and --{none.replace('_', '-')}: give one")
    given = {
        "volumes": list(options["volume"]) or None,
        "inputs": list(options.get("input", ())) or None,
        "workingDir": options["workdir"],
        "user": options["user"],
        "outputLimitBytes": options["output_limit"],
    }
    body = {k: v for k, v in given.items() if v is not None}
    if replacing and options.get("no_volumes"):
        body["volumes"] = []
    if replacing and options.get("no_inputs"):
        body["inputs"] = []
    return body


def schedule_fields(
    schedule: str | None, timezone: str | None, policy: str | None, catch_up: str | None
) -> dict[str, Any]:
    given = {
        "schedule": schedule,
        "timezone": timezone,
        "concurrencyPolicy": policy,
        "catchUp": catch_up,
    }
    return {k: v for k, v in given.items() if v is not None}


def schedule_from(options: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule's fields that schedule_options' values give."""
    return schedule_fields(
        options["schedule"], options["timezone"], options["concurrency_policy"], options["catch_up"]
    )


def retry_policy(
    base: Mapping[str, Any] | None,
    *,
    attempts: int | None,
    backoff: int | None,
    exit_codes: Sequence[int],
    on_timeout: bool,
    no_infrastructure: bool,
) -> dict[str, Any] | None:
    """The retry policy the options ask for, over `base` (the job's, on update); None when
    no retry option was given."""
    given = {
        "maxAttempts": attempts,
        "backoffSeconds": backoff,
        "onExitCodes": sorted(exit_codes) or None,
        "onTimeout": on_timeout or None,
        "onInfrastructure": False if no_infrastructure else None,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    if not changes:
        return None
    policy = {k: v for k, v in (base or {}).items() if v is not None}
    policy.update(changes)
    if "maxAttempts" not in policy:
        raise click.UsageError("--attempts: how many times to run at most, in all")
    return policy


def resources_from(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `resources` object of the options given, or None (the job uses a plan)."""
    names = {
        "cpus": "cpuCount",
        "gpus": "gpuCount",
        "ram_gb": "minRamGb",
        "vram_gb": "minVramGb",
        "storage_gb": "minStorageGb",
        "gpu_share": "gpuShare",
    }
    given = {api: options[key] for key, api in names.items() if options.get(key) is not None}
    return given or None


def retry_from(base: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The retry policy that retry_options' values ask for, over `base`."""
    return retry_policy(
        base,
        attempts=options["attempts"],
        backoff=options["backoff"],
        exit_codes=options["retry_on_exit"],
        on_timeout=options["retry_on_timeout"],
        no_infrastructure=options["no_retry_on_infrastructure"],
    )


def retry_given(options: Mapping[str, Any]) -> bool:
    """Whether any of retry_options' policy options was given (not --no-retry)."""
    return any(options[key] for key in RETRY_OPTIONS)


def recipe_body(
    *,
    image: str | None,
    command: Sequence[str],
    env: Sequence[tuple[str, str]],
    plan: str | None,
    timeout: int | None,
    labels: Sequence[tuple[str, str]],
    network: str | None,
    kind: str | None,
    ports: Sequence[int],
    retry: Mapping[str, Any] | None,
    description: str | None,
) -> dict[str, Any]:
    """A recipe's fields as given; what was not given is left out."""
    given = {
        "kind": kind,
        "ports": list(ports) or None,
        "image": image,
        "command": list(command) or None,
        "env": dict(env) or None,
        "plan": plan,
        "timeoutSeconds": timeout,
        "labels": dict(labels) or None,
        "network": network,
        "retry": retry,
        "description": description,
    }
    return {k: v for k, v in given.items() if v is not None}


def stop_body(grace: int | None, force: bool) -> dict[str, Any] | None:
    """A cancel's or stop's body: its grace, or SIGKILL now; None for jobd's default."""
    if grace is not None and force:
        raise click.UsageError("--grace and --force: give one (--force is no grace at all)")
    if force:
        return {"force": True}
    return {"graceSeconds": grace} if grace is not None else None
