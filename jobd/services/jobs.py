"""What the API asks of jobd: create jobs, run them again, cancel runs. Writes intent to the store
and wakes the supervisor; never touches the runtime."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs

from jobd.config import Config
from jobd.errors import Conflict, Forbidden, InvalidRequest, NotFound, PlanTooLarge
from jobd.inventory import Inventory
from jobd.models import (
    Failure,
    FailureType,
    Job,
    JobSpec,
    Owner,
    Plan,
    Recipe,
    Run,
    RunStatus,
    Schedule,
    StopReason,
    new_id,
    now,
    pending_run,
)
from jobd.placement import never_fits
from jobd.store import Store


@functools.cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("jobd").joinpath("openapi.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@functools.cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    # request schemas are self-contained: validating against them directly skips resolving
    # a $ref through the whole document on every request
    schema = openapi_document()["components"]["schemas"][schema_name]
    return jsonschema.Draft202012Validator(schema)


@functools.cache
def _checker(schema_name: str) -> jsonschema_rs.Draft202012Validator:
    schema = openapi_document()["components"]["schemas"][schema_name]
    return jsonschema_rs.Draft202012Validator(schema)


def validate(body: Any, schema_name: str) -> None:
    """Raise InvalidRequest naming the first offending field. jsonschema-rs tells whether the
    body is valid, in about a microsecond (every submission takes this path); jsonschema,
    a hundred times slower, words what is wrong and has the last word."""
    if _checker(schema_name).is_valid(body):
        return
    error = jsonschema.exceptions.best_match(_validator(schema_name).iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "body"
        raise InvalidRequest(f"{where}: {_friendly(error)}")


def _friendly(error: jsonschema.ValidationError) -> str:
    if error.validator == "pattern" and error.absolute_path and error.absolute_path[0] == "image":
        return f"{error.instance!r} is not a valid image reference"
    if error.validator == "not":
        return "give either command (a list) or startCommand (a string), not both"
    if error.validator == "anyOf" and not error.absolute_path:
        return "image: required, unless the job is made of a recipe"
    if error.validator == "dependentRequired":
        return f"needs a schedule: {error.message}"
    return error.message


SCHEDULE_FIELDS = ("schedule", "timezone", "concurrencyPolicy", "catchUp", "suspend")


def _schedule(data: Mapping[str, Any]) -> Schedule:
    try:
        return Schedule.from_api(data)
    except ValueError as e:
        raise InvalidRequest(str(e)) from None


def _updated_schedule(current: Schedule | None, body: Mapping[str, Any]) -> Schedule | None:
    """The job's schedule after an update: `schedule: null` removes it (the job is then on
    demand); other schedule fields change the one the job has, or come with a new one."""
    given = {k: body[k] for k in SCHEDULE_FIELDS if k in body}
    if not given:
        return current
    if "schedule" in given and given["schedule"] is None:
        if len(given) > 1:
            raise InvalidRequest("schedule: removing the schedule takes no other schedule field")
        return None
    if current is None and "schedule" not in given:
        field = next(iter(given))
        raise InvalidRequest(f"{field}: the job has no schedule; give one with it")
    base = current.to_api() if current else {}
    return _schedule({**base, **given})


def _check_ports(spec: JobSpec) -> None:
    if spec.ports and spec.network == "none":
        raise InvalidRequest("ports: a job without a network (network none) can't publish ports")


def _timing(schedule: Schedule | None) -> tuple[str, str, bool] | None:
    """What decides when a schedule fires next."""
    return (schedule.cron, schedule.timezone, schedule.suspended) if schedule else None


def _next_fire(schedule: Schedule | None, moment: datetime) -> datetime | None:
    if schedule is None or schedule.suspended:
        return None
    return schedule.next_after(moment)


class Jobs:
    def __init__(
        self,
        store: Store,
        config: Config,
        inventory: Inventory,
        wake: Callable[[], None],
        purge: Callable[[], None],
        pin: Callable[[str], Awaitable[str | None]],
    ) -> None:
        self.store = store
        self.config = config
        self.inventory = inventory
        self.wake = wake  # the supervisor: runs to place or to stop
        self.purge = purge  # the supervisor: a deleted job to clear away
        # the runtime, asked (never told): a local image as repository@sha256:digest
        self.pin = pin

    def plan(self, body: Mapping[str, Any]) -> Plan:
        """What a job (or recipe) of this request is given: its explicit `resources`, or its
        plan (the default plan when neither is given). One that could never run on this
        machine, even idle, is refused now rather than queued forever."""
        if body.get("resources") and body.get("plan") not in (None, "custom"):
            raise InvalidRequest("give either plan or resources (explicit requirements), not both")
        if body.get("resources"):
            plan = Plan.from_requirements(body["resources"])
            if plan.gpu_share and not (plan.gpus and plan.min_vram_bytes):
                raise InvalidRequest("resources: gpuShare needs gpuCount and minVramGb above 0")
        else:
            plan = self._named_plan(body.get("plan") or self.config.default_plan)
        node = self.inventory.last
        why = never_fits(plan, node) if node is not None else None
        if why:
            what = "its resources" if plan.id == "custom" else f"plan {plan.id!r}"
            raise PlanTooLarge(
                f"this machine has too little for {what}, so it could never run: {why}"
            )
        return plan

    def spec_plan(self, spec: JobSpec) -> Plan:
        return self.plan({"plan": spec.plan, "resources": spec.resources})

    def _named_plan(self, plan_id: str) -> Plan:
        plan = self.config.plans.get(plan_id)
        if plan is None:
            known = ", ".join(sorted(self.config.plans))
            raise InvalidRequest(f"plan: unknown plan {plan_id!r}; known plans: {known}")
        return plan

    def _check_priority(self, spec: JobSpec, owner: Owner) -> None:
        limit = self.config.priority_limit(owner.user, owner.uid)
        if spec.priority > limit:
            raise Forbidden(
                f"priority: {owner.user} may give a job priority {limit} at most"
                f" (asked {spec.priority}); max_priority in jobd's configuration sets it"
            )

    async def create(self, body: Mapping[str, Any], owner: Owner) -> tuple[Job, Run | None]:
        """A job, and its first run unless it has a schedule (then its ticks start them)."""
        validate(body, "JobCreate")
        requested = dict(body)
        recipe = await self._recipe(body["recipe"]) if "recipe" in body else None
        if recipe is not None:
            body = recipe.job_request(body)
            validate(body, "JobCreate")
        plan = self.plan(body)
        body = {**body, "plan": plan.id}
        spec = JobSpec.from_request(body, default_timeout=self.config.default_timeout_seconds)
        self._check_priority(spec, owner)
        _check_ports(spec)
        if recipe is not None:  # the snapshot: the image as it is now, whatever its tag does
            spec = dataclasses.replace(spec, image_digest=await self.pin(spec.image))
        schedule = _schedule(body) if "schedule" in body else None
        job_id = new_id("job")
        moment = now()
        run = None if schedule else pending_run(job_id, spec, plan, moment)
        job = Job(
            id=job_id,
            name=body.get("name"),
            spec=spec,
            labels=dict(body.get("labels", {})),
            owner=owner,
            created_at=moment,
            latest_run_id=run.id if run else None,
            status=run.status if run else None,
            schedule=schedule,
            next_fire_at=_next_fire(schedule, moment),
            recipe=recipe.name if recipe else None,
            requested=requested,
        )
        await self.store.create_job(job, run)
        self.wake()
        return job, run

    async def _recipe(self, name: str) -> Recipe:
        try:
            return await self.store.get_recipe(name)
        except NotFound:
            raise InvalidRequest(f"recipe: no recipe named {name!r}") from None

    async def rerun(self, job_id: str) -> Run:
        job = await self.store.get_job(job_id)
        run = pending_run(job.id, job.spec, self.spec_plan(job.spec), now())
        await self.store.add_run(run)
        self.wake()
        return run

    async def update(self, job_id: str, body: Mapping[str, Any], owner: Owner) -> Job:
        """Change what the job's next runs execute (and its name, labels and schedule): each
        field given replaces its value whole, the others stay. Runs created before keep
        theirs. A changed schedule (or a resumed one) fires next at its first tick from now;
        the ticks of a suspended schedule are not caught up."""
        validate(body, "JobUpdate")
        job = await self.store.get_job(job_id)
        if body.get("plan") and body.get("resources"):
            raise InvalidRequest("give either plan or resources (explicit requirements), not both")
        spec = job.spec.updated(body)
        self.spec_plan(spec)
        if "priority" in body:
            self._check_priority(spec, owner)
        _check_ports(spec)
        schedule = _updated_schedule(job.schedule, body)
        reschedule = _timing(schedule) != _timing(job.schedule)
        changed = dataclasses.replace(
            job,
            name=body.get("name", job.name),
            spec=spec,
            labels=dict(body.get("labels", job.labels)),
            schedule=schedule,
            next_fire_at=_next_fire(schedule, now()) if reschedule else job.next_fire_at,
        )
        updated = await self.store.update_job(changed, reschedule=reschedule)
        self.wake()  # the supervisor's next timer may have moved
        return updated

    async def status(self, job_id: str) -> dict[str, Any]:
        """The job's latest run, how many of its runs are in each status, and its schedule."""
        job = await self.store.get_job(job_id)
        counts = await self.store.run_counts(job_id)
        runs = await self.store.get_runs([job.latest_run_id] if job.latest_run_id else [])
        latest = runs.get(job.latest_run_id or "")
        return {
            "jobId": job.id,
            "status": job.status.value if job.status else None,
            "latestRun": latest.to_api() if latest else None,
            "runCounts": {s.value: counts.get(s.value, 0) for s in RunStatus},
            "totalRuns": sum(counts.values()),
            "schedule": job.schedule_doc(),
        }

    async def delete(self, job_id: str) -> None:
        """Delete the job: it is gone from the API at once; its pending runs end cancelled,
        its active ones are stopped, and then its containers, logs and records are removed
        (the supervisor does that part, also after a restart)."""
        await self.store.delete_job(job_id)
        self.purge()

    async def stop(self, run_id: str) -> Run:
        """Stop a run cleanly: SIGTERM, the grace period, SIGKILL. It ends succeeded when its
        container exits 0, cancelled otherwise. A run that has not started is cancelled."""
        run = await self.store.get_run(run_id)
        if run.status is not RunStatus.RUNNING:
            return await self.cancel(run_id)
        if run.stop_reason is not None:
            return run  # a stop (or a deadline's) is already under way
        recorded = await self.store.update_run(
            run_id, detail="stop requested", expect={RunStatus.RUNNING}, stop_reason=StopReason.STOP
        )
        if not recorded:  # it ended, or was cancelled, meanwhile
            return await self.cancel(run_id)
        self.wake()
        return await self.store.get_run(run_id)

    async def cancel(self, run_id: str) -> Run:
        """A pending run ends cancelled at once; an assigned or running one becomes cancelling
        and the supervisor stops it. A run that already ended is a conflict."""
        run = await self.store.get_run(run_id)
        if run.status is RunStatus.PENDING:
            cancelled = await self.store.transition(
                run_id,
                RunStatus.CANCELLED,
                expect={RunStatus.PENDING},
                detail="cancelled before it started",
                finished_at=now(),
                failure=Failure(type=FailureType.CANCELLED, message="cancelled before it started"),
            )
            if cancelled is not None:
                return cancelled
        cancelling = await self.store.transition(
            run_id,
            RunStatus.CANCELLING,
            expect={RunStatus.ASSIGNED, RunStatus.RUNNING},
            detail="cancel requested",
        )
        if cancelling is not None:
            self.wake()
            return cancelling
        run = await self.store.get_run(run_id)
        if run.status.is_terminal:
            raise Conflict(f"run {run_id} already ended ({run.status.value}); nothing to cancel")
        return run  # already cancelling
