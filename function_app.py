"""The Function App: triggers wired to ``sync_core``, and nothing else.

- ``nightly_sync``: a timer on ``ACRSYNC_SCHEDULE`` (02:00 UTC by default), never
  run on startup, so restarts and scale-outs do not start extra runs.
- ``sync_now``: ``POST /api/sync`` queues a run and answers 202 with its status URL.
- ``run_queued``: the queue trigger that carries a queued run out.
- ``run_given_up``: the poison queue; ends the report of a run the host gave up on.
- ``plan_now``: ``POST /api/plan`` answers with the plan.
- ``run_report``: ``GET /api/runs/{run_id}`` and ``GET /api/runs/latest``.
- ``openapi``: ``GET /api/openapi``, the OpenAPI document of these routes.

Every route needs a function key. Each HTTP function accepts every method and the
core answers a wrong one with 405, so that error is JSON like the others.
"""

import os

import azure.functions as func

from sync_core import api, entrypoints
from sync_core.runqueue import POISON_QUEUE, RUN_QUEUE, connection_name
from sync_core.settings import timer_schedule

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

EVERY_METHOD = [
    func.HttpMethod.GET,
    func.HttpMethod.POST,
    func.HttpMethod.PUT,
    func.HttpMethod.PATCH,
    func.HttpMethod.DELETE,
    func.HttpMethod.HEAD,
    func.HttpMethod.OPTIONS,
]
STORAGE_CONNECTION = connection_name(os.environ)


def _response(answer: api.Answer) -> func.HttpResponse:
    return func.HttpResponse(
        answer.body,
        status_code=answer.status_code,
        headers=dict(answer.headers),
        mimetype=answer.media_type,
    )


@app.function_name("nightly_sync")
@app.timer_trigger(
    schedule=timer_schedule(os.environ),
    arg_name="timer",
    run_on_startup=False,
    use_monitor=True,
)
def nightly_sync(timer: func.TimerRequest) -> None:
    entrypoints.on_timer(past_due=timer.past_due)


@app.function_name("sync_now")
@app.route(route="sync", methods=EVERY_METHOD)
def sync_now(req: func.HttpRequest) -> func.HttpResponse:
    return _response(api.start_sync(req.method, req.url, req.get_body(), os.environ))


@app.function_name("run_queued")
@app.queue_trigger(
    arg_name="message", queue_name=RUN_QUEUE, connection=STORAGE_CONNECTION
)
def run_queued(message: func.QueueMessage) -> None:
    entrypoints.on_run_message(
        message.get_body(), dequeue_count=message.dequeue_count or 1
    )


@app.function_name("run_given_up")
@app.queue_trigger(
    arg_name="message", queue_name=POISON_QUEUE, connection=STORAGE_CONNECTION
)
def run_given_up(message: func.QueueMessage) -> None:
    entrypoints.on_poison_message(message.get_body())


@app.function_name("plan_now")
@app.route(route="plan", methods=EVERY_METHOD)
def plan_now(req: func.HttpRequest) -> func.HttpResponse:
    return _response(
        api.preview_plan(
            req.method, req.url, dict(req.headers), req.get_body(), os.environ
        )
    )


@app.function_name("run_report")
@app.route(route="runs/{run_id}", methods=EVERY_METHOD)
def run_report(req: func.HttpRequest) -> func.HttpResponse:
    run_id = req.route_params.get("run_id", "")
    return _response(api.run_report(req.method, run_id, os.environ))


@app.function_name("openapi")
@app.route(route="openapi", methods=EVERY_METHOD)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return _response(api.openapi_document(req.method))
