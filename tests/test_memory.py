"""The memory manager: estimates, admission on a simulated small board, OOM handling (unit tests),
and admission through the real API and worker (acceptance of the edge-device issue)."""

from __future__ import annotations

import threading
import time

import pytest

from appliance.errors import InsufficientMemory
from appliance.jobs.context import JobInterrupted
from appliance.memory.admission import (
    MB,
    Estimate,
    MemoryBusy,
    MemoryManager,
    ModelCache,
    estimate_activations,
    estimate_model,
    estimate_sae_training,
    run_with_oom_retry,
)
from tests.support import wait_until

GB = 1024 * MB


class FakeCtx:
    """The parts of a JobContext the manager uses: an id, a status line, a cancellable sleep."""

    def __init__(self, job_id: str, defer: bool = False):
        self.job_id = job_id
        self.messages: list[str] = []
        self.cancelled = threading.Event()
        self.defer_memory_wait = defer  # as the worker's interactive jobs

    def status(self, message: str) -> None:
        self.messages.append(message)

    def sleep(self, seconds: float) -> None:
        if self.cancelled.wait(seconds):
            raise JobInterrupted("cancel")


def small_board(available: int = 64 * GB) -> MemoryManager:
    """An 8 GB board at the default 85% budget (6963 MB), with plenty of live free memory."""
    return MemoryManager(physical_bytes=8 * GB, fraction=0.85, available=lambda: available)


def test_estimates() -> None:
    assert estimate_model(1_100_000_000, "fp16").total == 2_200_000_000
    assert estimate_model(1_000, "q4").total == 500
    assert estimate_activations(1000, 768, "fp16", n_tensors=2).total == 1000 * 768 * 2 * 2
    sae = estimate_sae_training(512, 4096, 4096, "fp32", "adam")
    params = 2 * 512 * 4096 + 4096 + 512
    assert sae.parts == {
        "sae weights": params * 4,
        "gradients": params * 4,
        "optimizer state": params * 8,
        "batch": 4096 * (2 * 512 + 2 * 4096) * 4 * 2,
    }
    with pytest.raises(ValueError):
        estimate_model(1, "fp64")


def test_never_fits_fails_fast_with_a_suggestion() -> None:
    manager = small_board()
    with pytest.raises(InsufficientMemory) as info:
        with manager.admit(FakeCtx("job_a"), Estimate({"weights": 9 * GB})):
            pass
    error = info.value
    assert error.code == "INSUFFICIENT_MEMORY"
    assert "9,216 MB" in error.message and "6,963 MB" in error.message and "batch size" in error.message
    assert error.details["needed_mb"] == 9216 and error.details["budget_mb"] == pytest.approx(6963.2)


def test_shrink_finds_a_batch_that_fits() -> None:
    manager = small_board()
    tried = []

    def shrink(estimate: Estimate) -> Estimate | None:
        batch = estimate.parts["batch"] // 2
        tried.append(batch)
        return Estimate({"batch": batch}) if batch >= GB else None

    with manager.admit(FakeCtx("job_a"), Estimate({"batch": 32 * GB}), shrink=shrink) as admitted:
        assert admitted.total == 4 * GB
        assert manager.reserved() == 4 * GB
    assert manager.reserved() == 0 and tried == [16 * GB, 8 * GB, 4 * GB]


def test_a_job_waits_until_another_releases_its_memory() -> None:
    manager = small_board()
    first, second = FakeCtx("job_a"), FakeCtx("job_b")
    order: list[str] = []
    release = threading.Event()

    def run_first() -> None:
        with manager.admit(first, Estimate({"x": 5 * GB})):
            order.append("a admitted")
            release.wait(5)
            order.append("a releasing")  # inside the block: b cannot be admitted before this

    def run_second() -> None:
        with manager.admit(second, Estimate({"x": 4 * GB})):
            order.append("b admitted")

    a = threading.Thread(target=run_first)
    a.start()
    time.sleep(0.1)
    b = threading.Thread(target=run_second)
    b.start()
    time.sleep(0.5)
    assert order == ["a admitted"] and second.messages and "Waiting for memory" in second.messages[0]
    release.set()
    a.join(5)
    b.join(5)
    assert order == ["a admitted", "a releasing", "b admitted"]


def test_waiting_job_can_be_cancelled() -> None:
    manager = small_board()
    holder, waiter = FakeCtx("job_a"), FakeCtx("job_b")
    with manager.admit(holder, Estimate({"x": 6 * GB})):
        threading.Timer(0.3, waiter.cancelled.set).start()
        with pytest.raises(JobInterrupted):
            with manager.admit(waiter, Estimate({"x": 2 * GB})):
                pass
    assert manager.reserved() == 0


def test_a_deferred_job_keeps_its_place_and_smaller_jobs_pass_only_with_memory_it_cannot_use() -> None:
    manager = small_board()  # 6963 MB
    training = manager.admit(FakeCtx("training"), Estimate({"x": 5 * GB}))
    training.__enter__()
    with pytest.raises(MemoryBusy) as busy:  # 4 GB cannot fit beside 5 GB: back to the queue, not waiting here
        with manager.admit(FakeCtx("big", defer=True), Estimate({"x": 4 * GB})):
            pass
    assert "Waiting for memory: needs 4,096 MB, 1,843 MB free" in busy.value.message
    assert not manager.ready("big")
    # The 1.8 GB free are of no use to the big job yet: a small job may have them.
    with manager.admit(FakeCtx("small", defer=True), Estimate({"x": 1 * GB})):
        assert manager.reserved() == 6 * GB
    training.__exit__(None, None, None)
    # Now the big job fits: its 4 GB are kept for it, and a newer job gets only the rest.
    with pytest.raises(MemoryBusy):
        with manager.admit(FakeCtx("newer", defer=True), Estimate({"x": 3 * GB})):
            pass
    with manager.admit(FakeCtx("small", defer=True), Estimate({"x": 2 * GB})):
        pass
    assert manager.ready("big") and manager.ready("not-in-line")
    with manager.admit(FakeCtx("big", defer=True), Estimate({"x": 4 * GB})):
        assert manager.reserved() == 4 * GB
    # A job that gave up its place (cancelled while queued) keeps nothing for itself.
    manager.forget("newer")
    with manager.admit(FakeCtx("other", defer=True), Estimate({"x": 6 * GB})):
        pass
    assert manager.reserved() == 0


def test_a_job_that_waits_on_its_thread_also_keeps_its_place() -> None:
    manager = small_board()
    holder = manager.admit(FakeCtx("training"), Estimate({"x": 5 * GB}))
    holder.__enter__()
    admitted, checked = threading.Event(), threading.Event()

    def heavy() -> None:  # a heavy job waits in place (it holds the one heavy slot anyway)
        with manager.admit(FakeCtx("heavy"), Estimate({"x": 4 * GB})):
            admitted.set()
            # Held until the newer job has asked: whether the heavy job is still waiting or already
            # admitted when it asks, the newer one must not get the memory.
            checked.wait(5)

    waiter = threading.Thread(target=heavy)
    waiter.start()
    wait_until = time.monotonic() + 5
    while not manager._waiters and time.monotonic() < wait_until:
        time.sleep(0.01)
    holder.__exit__(None, None, None)
    with pytest.raises(MemoryBusy):  # the freed memory is the waiting job's
        with manager.admit(FakeCtx("newer", defer=True), Estimate({"x": 4 * GB})):
            pass
    checked.set()
    waiter.join(5)
    assert admitted.is_set()
    manager.forget("newer")
    assert manager.reserved() == 0 and not manager._waiters


def test_the_api_estimates_what_can_never_fit() -> None:
    from appliance.memory.estimates import minimum, refuse_what_never_fits

    manager = small_board()
    hp = {"batch_size": 1024, "expansion_factor": 8, "optimizer": "adam"}
    trained = minimum("training.run", {"d_in": 512, "hyperparameters": hp})
    assert trained == estimate_sae_training(512, 4096, 1024, optimizer="adam")
    streamed = minimum(
        "training.run", {"d_in": 512, "hyperparameters": hp, "stream": {"parameters": 10**9, "precision": "fp32"}}
    )
    assert streamed.parts["model weights (fp32)"] == 4 * 10**9
    assert minimum("steering.generate", {"parameters": 10**9, "precision": "fp16"}).total == 2 * 10**9
    assert minimum("selftest", {"steps": 3}) is None and minimum("dataset.import", {}) is None
    refuse_what_never_fits(manager, "steering.generate", {"parameters": 10**9, "precision": "fp16"})
    with pytest.raises(InsufficientMemory) as info:
        refuse_what_never_fits(
            manager, "training.run", {"d_in": 2048, "hyperparameters": {"batch_size": 65536, "expansion_factor": 64}}
        )
    assert "batch size" in info.value.message


def test_live_free_memory_also_limits_admission() -> None:
    free = {"bytes": 1 * GB}
    manager = MemoryManager(physical_bytes=8 * GB, fraction=0.85, available=lambda: free["bytes"])
    ctx = FakeCtx("job_a")
    threading.Timer(0.4, lambda: free.update(bytes=8 * GB)).start()  # another program exits
    with manager.admit(ctx, Estimate({"x": 2 * GB})):
        assert free["bytes"] == 8 * GB  # admitted only once the memory was free
    assert "Waiting for memory" in ctx.messages[0]


def test_model_cache_counts_against_the_budget_and_is_evicted() -> None:
    manager = small_board()
    manager.models.put("m_big", object(), 5 * GB)
    manager.models.put("m_small", object(), 1 * GB)
    assert manager.reserved() == 6 * GB
    with manager.admit(FakeCtx("job_a"), Estimate({"x": 4 * GB})):
        # The least recently used model was unloaded to make room; the other stayed.
        assert manager.models.get("m_big") is None and manager.models.get("m_small") is not None
    cache = ModelCache()
    cache.put("old", 1, 10)
    time.sleep(0.05)
    cache.put("new", 2, 10)
    assert cache.evict_idle(0.03) == ["old"] and cache.get("new") == 2


def test_oom_retry_halves_the_batch() -> None:
    calls = []

    def step(batch: int) -> str:
        calls.append(batch)
        if batch > 100:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"ran {batch}"

    ctx = FakeCtx("job_a")
    assert run_with_oom_retry(step, 512, ctx=ctx) == ("ran 64", 64)
    assert calls == [512, 256, 128, 64] and "retrying with 256" in ctx.messages[0]
    with pytest.raises(InsufficientMemory):
        run_with_oom_retry(lambda b: (_ for _ in ()).throw(MemoryError()), 4, min_batch=2)
    with pytest.raises(ValueError):  # other errors are not swallowed
        run_with_oom_retry(lambda b: (_ for _ in ()).throw(ValueError("bug")), 4)


# -- through the real API and worker, on a simulated 1000 MB board with a 50% budget (500 MB) ----------


@pytest.fixture
def small_appliance(make_appliance):
    app = make_appliance({"MISTUDIO_MEMORY_TOTAL_MB": "1000", "MISTUDIO_MAX_MEMORY_FRACTION": "0.5"})
    app.start_api()
    app.start_worker()
    return app


def test_job_that_can_never_fit_is_refused_when_requested(small_appliance) -> None:
    response = small_appliance.post("/api/jobs/selftest", json={"steps": 2, "delay_ms": 0, "memory_mb": 800})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_MEMORY"
    assert "800 MB" in error["message"] and "500 MB" in error["message"]
    assert "MISTUDIO_MAX_MEMORY_FRACTION" in error["message"]
    assert small_appliance.get("/api/jobs").json()["data"] == []  # no job row was created
    assert small_appliance.get("/api/system/info").json()["data"]["memory_budget_mb"] == 500


def _waiting_for_memory(app, job_id: str) -> dict | None:
    job = app.job(job_id)
    return job if job["status"] == "queued" and "Waiting for memory" in (job["message"] or "") else None


def test_job_that_fits_after_another_finishes_waits_then_runs(small_appliance) -> None:
    first = small_appliance.selftest(steps=30, delay_ms=50, memory_mb=300)
    small_appliance.wait_status(first, "running")
    second = small_appliance.selftest(steps=2, delay_ms=0, memory_mb=300)
    wait_until(lambda: _waiting_for_memory(small_appliance, second), what="the second job to wait for memory")
    assert small_appliance.job(first)["status"] == "running"
    done_first = small_appliance.wait_status(first, "completed", timeout=20)
    done_second = small_appliance.wait_status(second, "completed", timeout=20)
    assert done_second["finished_at"] > done_first["finished_at"]
    events = small_appliance.get(f"/api/jobs/{second}/events", params={"format": "json"}).json()["data"]
    assert any("Waiting for memory" in (e["data"].get("message") or "") for e in events)


def test_a_job_waiting_for_memory_does_not_hold_a_worker_thread(small_appliance) -> None:
    """Two worker threads: a long heavy job holds one thread and 300 of the 500 MB. An interactive job
    that needs 300 MB waits in the queue, so the other thread still serves the interactive jobs behind
    it, also one that needs memory nobody ahead of it can use (100 MB); the waiting job runs once
    the heavy one ends."""
    app = small_appliance
    training = app.selftest(lane="heavy", steps=100_000, delay_ms=50, memory_mb=300)
    app.wait_status(training, "running")
    waiting = app.selftest(steps=1, delay_ms=0, memory_mb=300)
    wait_until(lambda: "Waiting for memory" in (app.job(waiting)["message"] or ""), what="the job to wait for memory")
    quick = app.selftest(steps=1, delay_ms=0)
    small = app.selftest(steps=1, delay_ms=0, memory_mb=100)
    app.wait_status(quick, "completed", timeout=30)
    app.wait_status(small, "completed", timeout=30)
    assert _waiting_for_memory(app, waiting), "the big job should still wait while the training holds memory"
    assert app.job(training)["status"] == "running"
    assert app.post(f"/api/jobs/{training}/cancel").status_code == 200
    done = app.wait_status(waiting, "completed", "failed", timeout=30)
    assert done["status"] == "completed", done
    assert done["started_at"] > app.job(small)["finished_at"]
    events = app.get(f"/api/jobs/{waiting}/events", params={"format": "json"}).json()["data"]
    assert any("Waiting for memory" in (e["data"].get("message") or "") for e in events)


def test_a_job_cancelled_while_it_waits_for_memory_gives_up_its_place(small_appliance) -> None:
    app = small_appliance
    training = app.selftest(lane="heavy", steps=100_000, delay_ms=50, memory_mb=300)
    app.wait_status(training, "running")
    waiting = app.selftest(steps=1, delay_ms=0, memory_mb=300)
    wait_until(lambda: _waiting_for_memory(app, waiting), what="the interactive job to wait for memory")
    assert app.post(f"/api/jobs/{waiting}/cancel").status_code == 200
    assert app.job(waiting)["status"] == "cancelled"
    assert app.post(f"/api/jobs/{training}/cancel").status_code == 200
    app.wait_status(training, "cancelled")
    # 400 MB fit only if nothing is kept for the cancelled job any more.
    assert app.wait_status(app.selftest(steps=1, delay_ms=0, memory_mb=400), "completed", timeout=30)


def test_out_of_memory_inside_a_job_is_a_clean_failure(small_appliance) -> None:
    job = small_appliance.wait_status(small_appliance.selftest(steps=5, delay_ms=0, oom_at=2), "failed")
    assert job["error"]["code"] == "INSUFFICIENT_MEMORY" and "smaller batch" in job["error"]["message"]
    assert small_appliance.worker.poll() is None  # the worker lives on
    assert small_appliance.wait_status(small_appliance.selftest(steps=1, delay_ms=0), "completed")
