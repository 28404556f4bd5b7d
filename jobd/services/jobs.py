"""Jobs as the edge asks for them: create them (of a request, or of a recipe's snapshot), run
them again, change what their next runs execute, delete them, and read them. Writes intent to
the store and wakes the supervisor; never touches the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from jobd.config import Config
from jobd.domain.capacity import never_fits
from jobd.domain.identity import user_problem
from jobd.domain.jobs import Job, JobFilter, JobSpec
from jobd.domain.owners import EVERYONE, Caller, Owner, Reach
from jobd.domain.recipes import Recipe
from jobd.domain.records import new_id, now
from jobd.domain.references import Reference
from jobd.domain.resources import Plan, plan_name
from jobd.domain.runs import Run, submission
from jobd.domain.schedules import Schedule
from jobd.domain.sharing import QueueLimit, queue_limits
from jobd.domain.states import RunStatus
from jobd.domain.uploads import InputFile, inputs_problem
from jobd.domain.volumes import mount_problem
from jobd.domain.workflows import Condition, Dependency, dependencies_problem
from jobd.errors import Conflict, Forbidden, InvalidRequest, NotFound, NotHere, PlanTooLarge
from jobd.node.accounts import identity_for
from jobd.node.inventory import Inventory
from jobd.node.mounts import check_host_paths
from jobd.services import lookup
from jobd.services.ssh import checked_spec
from jobd.services.validation import validate
from jobd.store import Store
from jobd.store.rows import Page

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


def _slugs(body: Mapping[str, Any]) -> list[str]:
    """The uploads a job's request names: its inputs, or the one `slug` (as render farms
    take a job of a recipe and an uploaded scene)."""
    if "slug" in body and "inputs" in body:
        raise InvalidRequest("give inputs or slug (one input), not both")
    return [body["slug"]] if "slug" in body else list(body["inputs"])


def _check_env(spec: JobSpec) -> None:
    both = sorted(set(spec.env) & set(spec.secret_env))
    if both:
        raise InvalidRequest(f"secretEnv: {', '.join(both)} also in env; give each name once")


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
        *,
        rootless: bool,
    ) -> None:
        self.store = store
        self.rootless = rootless  # the runtime's: every run is the daemon user's, in a userns
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
        name = plan_name(plan_id)
        plan = self.config.plans.get(name)
        if plan is None:
            what = f"{plan_id!r} (Render's id of {name!r})" if name != plan_id else repr(plan_id)
            known = ", ".join(sorted(self.config.plans))
            raise InvalidRequest(
                f"plan: unknown plan {what}; known plans: {known}"
                " (or Render's instance type id of one, such as plan-srv-006)"
            )
        return plan

    async def _check_access(self, spec: JobSpec, owner: Owner) -> None:
        """What the job's runs will be on the host: its owner (on the system daemon: their
        uid and groups, and no other `user`), with volumes as written; host paths must exist,
        be allowed here and be reachable by that user as the mount asks; a named volume must
        be the owner's, or not exist yet (the job's first run makes it)."""
        identity = identity_for(owner.uid, rootless=self.rootless)
        problem = mount_problem(spec.volumes) or user_problem(spec.user, identity)
        if problem:
            raise InvalidRequest(problem)
        if any(v.host_path for v in spec.volumes):
            await asyncio.to_thread(check_host_paths, spec.volumes, self.config, identity)
        for mount in spec.volumes:
            if mount.host_path:
                continue
            try:
                volume = await self.store.get_volume(mount.source, reach=EVERYONE)
            except NotFound:
                continue
            if volume.owner.uid != owner.uid:
                raise Conflict(f"volumes: the name {mount.source!r} is another user's volume")

    def _checked_ssh(self, spec: JobSpec) -> JobSpec:
        # firewall rules for published ports need root and rootful podman (node/firewall.py)
        firewall = not self.rootless and os.geteuid() == 0
        return checked_spec(spec, publish_address=self.config.publish_address, firewall=firewall)

    async def _inputs(self, slugs: list[str], owner: Owner) -> tuple[InputFile, ...]:
        """The owner's uploads these slugs name, as the job's inputs: NotHere naming one
        that does not exist (or is not theirs) or has expired."""
        found = await self.store.get_uploads(slugs, reach=Reach(owner.uid))
        used = await self.store.upload_users(list(found))
        moment = now()
        for slug in slugs:
            upload = found.get(slug)
            if upload is None:
                raise NotHere(f"inputs: no upload {slug} (uploads expire unless a job names them)")
            if not used[slug] and upload.expires_at(self.config.uploads.expire_seconds) < moment:
                raise NotHere(f"inputs: upload {slug} has expired")
        inputs = tuple(InputFile.of(found[slug]) for slug in slugs)
        problem = inputs_problem(slugs, inputs)
        if problem:
            raise InvalidRequest(problem)
        return inputs

    def _check_priority(self, spec: JobSpec, owner: Owner) -> None:
        limit = self.config.priority_limit(owner.user, owner.uid)
        if spec.priority > limit:
            raise Forbidden(
                f"priority: {owner.user} may give a job priority {limit} at most"
                f" (asked {spec.priority}); max_priority in jobd's configuration sets it"
            )

    async def create(self, body: Mapping[str, Any], caller: Caller) -> tuple[Job, Run | None]:
        """A job, and its first run unless it has a schedule (then its ticks start them)."""
        validate(body, "JobCreate")
        owner = caller.owner
        project = caller.project(body.get("project"), self.config.sharing.projects)
        requested = _shown(body)
        body = _plan_alias(body)
        recipe = await self._recipe(body["recipe"], caller) if "recipe" in body else None
        if recipe is not None:
            body = recipe.job_request(body)
            validate(body, "JobCreate")
        plan = self.plan(body)
        body = {**body, "plan": plan.id}
        try:
            spec = JobSpec.from_request(body, default_timeout=self.config.default_timeout_seconds)
        except ValueError as e:  # what the schema can't say (an array's indices)
            raise InvalidRequest(str(e)) from None
        if spec.output_limit_bytes is None:  # the default frozen in, as the job's final config
            spec = dataclasses.replace(spec, output_limit_bytes=self.config.outputs.limit_bytes)
        if body.get("inputs") or "slug" in body:
            spec = dataclasses.replace(spec, inputs=await self._inputs(_slugs(body), owner))
        self._check_priority(spec, owner)
        _check_ports(spec)
        spec = self._checked_ssh(spec)
        _check_env(spec)
        await self._check_access(spec, owner)
        if recipe is not None:  # the snapshot: the image as it is now, whatever its tag does
            spec = dataclasses.replace(spec, image_digest=await self.pin(spec.image))
        schedule = _schedule(body) if "schedule" in body else None
        after = await self._dependencies(body.get("after", ()), caller, schedule)
        job_id = new_id("job")
        moment = now()
        runs = [] if schedule else submission(job_id, spec, plan, moment)
        run = runs[0] if runs else None
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
            project=project,
        )
        await self.store.create_job(job, runs, self._queue_limits(job), after)
        self.wake()
        return job, run

    async def _dependencies(
        self, after: Sequence[Mapping[str, Any]], caller: Caller, schedule: Schedule | None
    ) -> list[Dependency]:
        """The runs a new job's first runs wait on: each given run, or a job's latest run
        (an array job's: the whole array). Another user's are not found, as if they did not
        exist."""
        problem = dependencies_problem(after)
        if after and schedule is not None:
            problem = "after: a scheduled job's runs start on its ticks; they can't wait on runs"
        if problem:
            raise InvalidRequest(problem)
        found = []
        for item in after:
            condition = Condition(item.get("condition", Condition.OK.value))
            run, of_job = await self._dependency_run(item["id"], caller)
            if run.array_id is not None and of_job:  # a job's latest array: all of it
                found.append(Dependency(on=run.array_id, condition=condition, array=True))
            else:
                found.append(Dependency(on=run.id, condition=condition))
        return found

    async def _dependency_run(self, given: str, caller: Caller) -> tuple[Run, bool]:
        """The run `given` names (a run's id or prefix; a job's id, prefix or name: its
        latest run), and whether it was named by its job."""
        reach, uid = caller.reach, caller.owner.uid
        try:
            if not given.startswith("run-"):
                with contextlib.suppress(NotFound):
                    job_id = await lookup.resolve(self.store, Reference("job", given), reach, uid)
                    job = await self.store.get_job(job_id, reach=reach)
                    if job.latest_run_id is None:
                        raise InvalidRequest(f"after: job {given} has no runs yet")
                    return await self.store.get_run(job.latest_run_id, reach=reach), True
            run_id = await lookup.resolve(self.store, Reference("run", given), reach, uid)
            return await self.store.get_run(run_id, reach=reach), False
        except NotFound:
            raise InvalidRequest(f"after: no run or job {given}") from None

    async def _recipe(self, name: str, caller: Caller) -> Recipe:
        try:
            return await self.store.get_recipe(name, reach=caller.reach)
        except NotFound:
            raise InvalidRequest(f"recipe: no recipe named {name!r}") from None

    async def rerun(self, job_id: str, reach: Reach) -> Run:
        job = await self.store.get_job(job_id, reach=reach)
        runs = submission(job.id, job.spec, self.spec_plan(job.spec), now())
        await self.store.add_runs(runs, self._queue_limits(job))
        self.wake()
        return runs[0]

    def _queue_limits(self, job: Job) -> list[QueueLimit]:
        """The max_queued quotas a new run of the job counts against: its owner's, its
        project's (a teammate's re-run counts against the job's owner)."""
        owner = job.owner
        return queue_limits(self.config.sharing, owner.user, owner.uid, job.project)

    async def update(self, job_id: str, body: Mapping[str, Any], caller: Caller) -> Job:
        """Change what the job's next runs execute (and its name, labels and schedule): each
        field given replaces its value whole, the others stay. Runs created before keep
        theirs. A changed schedule (or a resumed one) fires next at its first tick from now;
        the ticks of a suspended schedule are not caught up."""
        validate(body, "JobUpdate")
        body = _plan_alias(body)
        job = await self.store.get_job(job_id, reach=caller.own_reach)
        if body.get("plan") and body.get("resources"):
            raise InvalidRequest("give either plan or resources (explicit requirements), not both")
        spec = job.spec.updated(body)
        if "inputs" in body:
            spec = dataclasses.replace(spec, inputs=await self._inputs(body["inputs"], job.owner))
        self.spec_plan(spec)
        if "priority" in body:
            self._check_priority(spec, caller.owner)
        _check_ports(spec)
        spec = self._checked_ssh(spec)
        _check_env(spec)
        await self._check_access(spec, job.owner)
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

    async def status(self, job_id: str, reach: Reach) -> dict[str, Any]:
        """The job's latest run, how many of its runs are in each status, and its schedule."""
        job = await self.store.get_job(job_id, reach=reach)
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

    async def cancel(
        self, job_id: str, reach: Reach, *, grace: int | None = None
    ) -> tuple[Job, list[Run]]:
        """Cancel the job's runs that have not ended, as a cancel of each does (Runs.cancel):
        the job, and those runs as they are now. A conflict when none is left to cancel."""
        job = await self.store.get_job(job_id, reach=reach)
        cancelled = await self.store.cancel_job(job.id, grace)
        if not cancelled:
            raise Conflict(f"job {job.id} has no pending or running runs; nothing to cancel")
        self.wake()
        runs = await self.store.get_runs(cancelled)
        job = await self.store.get_job(job.id, reach=EVERYONE)  # its status, as they changed it
        return job, [runs[run_id] for run_id in cancelled if run_id in runs]

    async def delete(self, job_id: str, reach: Reach) -> None:
        """Delete the job: it is gone from the API at once; its pending runs end cancelled,
        its active ones are stopped, and then its containers, logs and records are removed
        (the supervisor does that part, also after a restart)."""
        await self.store.get_job(job_id, reach=reach)
        await self.store.delete_job(job_id)
        self.purge()

    # -- reads ------------------------------------------------------------------------------

    async def get(self, job_id: str, reach: Reach) -> Job:
        return await self.store.get_job(job_id, reach=reach)

    async def resolve(self, text: str, caller: Caller) -> str:
        """The id of the job `text` names: its id, a unique prefix of it, or its name (the
        caller's newest job of that name), within the caller's reach."""
        reference = Reference("job", text)
        return await lookup.resolve(self.store, reference, caller.reach, caller.owner.uid)

    async def list_jobs(self, where: JobFilter, *, limit: int, cursor: str | None) -> Page[Job]:
        return await self.store.list_jobs(where, limit=limit, cursor=cursor)

    async def latest_runs(self, jobs: Iterable[Job]) -> dict[str, Run]:
        """The latest run of each of these jobs, by run id."""
        return await self.store.get_runs(j.latest_run_id for j in jobs if j.latest_run_id)

    async def array_runs(self, jobs: Iterable[Job]) -> dict[str, dict[str, int]]:
        """For each array job, how many runs of its latest array are in each status."""
        return {
            job.id: await self.store.array_counts(job.latest_run_id)
            for job in jobs
            if job.spec.array is not None and job.latest_run_id is not None
        }

    async def list_runs(
        self, job_id: str, reach: Reach, *, limit: int, cursor: str | None
    ) -> Page[Run]:
        """The job's runs, newest first."""
        return await self.store.list_runs(job_id, limit=limit, cursor=cursor, reach=reach)


SECRET_SHOWN = "(secret)"


def _plan_alias(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A request with Render's `planId` as `plan`, and a Render instance type id as the plan
    of its tier, so that what is stored and shown is jobd's plan name."""
    if "planId" in body:
        given = body.get("plan")
        if given is not None and plan_name(given) != plan_name(body["planId"]):
            raise InvalidRequest(
                f"plan and planId name different plans ({given!r}, {body['planId']!r});"
                " give one of them"
            )
        body = {**{k: v for k, v in body.items() if k != "planId"}, "plan": body["planId"]}
    if isinstance(body.get("plan"), str):
        body = {**body, "plan": plan_name(body["plan"])}
    return body


def _shown(body: Mapping[str, Any]) -> dict[str, Any]:
    """A request as it is kept and shown (requestedConfig): secret env values replaced."""
    if not body.get("secretEnv"):
        return dict(body)
    return {**body, "secretEnv": dict.fromkeys(body["secretEnv"], SECRET_SHOWN)}
