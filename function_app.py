"""The Function App: two triggers wired to the same core, and nothing else.

- ``nightly_sync``: a timer on ``ACRSYNC_SCHEDULE`` (02:00 UTC by default), never
  run on startup, so restarts and scale-outs do not start extra runs.
- ``sync_now``: ``POST /api/sync`` with a function key, for pipelines.
"""

import os

import azure.functions as func

from sync_core import entrypoints
from sync_core.settings import timer_schedule

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


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
@app.route(route="sync", methods=[func.HttpMethod.POST])
def sync_now(req: func.HttpRequest) -> func.HttpResponse:
    answer = entrypoints.on_http_sync(req.get_body())
    return func.HttpResponse(
        answer.body, status_code=answer.status_code, mimetype="application/json"
    )
