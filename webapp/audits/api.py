"""JSON API over the same audits and ownership rules as the pages (documented in docs/api.md).

Authentication is Django's session (sign in at the login page); unsafe methods need the CSRF
token (``X-CSRFToken`` header) exactly as the pages' forms do. Every answer is JSON, errors
included: ``{"error": "<message>"}``, plus ``"errors": {"<field>": ["<message>"]}`` when input was
at fault. Anonymous requests get 401 (not a redirect), other users' audits 404 (their existence
is not confirmed), a wrong method 405.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.paginator import EmptyPage, Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from audit.planner import Assumptions, PlanningError, parse_assumptions, plan_for_config
from audit.summary import AuditSummary
from generator.config import AuditConfig, ConfigError, parse_config
from webapp.audits.access import owned_audit, visible_audits
from webapp.audits.forms import available_fr_models, available_generators, identity_judge_problem
from webapp.audits.models import Audit

log = logging.getLogger(__name__)

#: Largest accepted request body (the same limit as a config file).
MAX_BODY_BYTES = 64 * 1024
#: Audits per page of ``GET api/audits/``.
PAGE_SIZE = 50
#: Integers beyond this are no sensible config value (and overflow the database's bigint).
MAX_ABS_INT = 2**63 - 1
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

View = Callable[..., HttpResponse]


# --- Responses --------------------------------------------------------------------------------

def error(status: int, message: str, errors: dict[str, list[str]] | None = None,
          **extra: Any) -> JsonResponse:
    """A JSON error: ``{"error": message}``, with per-field ``errors`` when input was at fault."""
    body: dict[str, Any] = {"error": message, **extra}
    if errors:
        body["errors"] = errors
    return JsonResponse(body, status=status)


def field_error(field: str, message: str, status: int = 400) -> JsonResponse:
    """A JSON error that names the one field at fault."""
    return error(status, f"{field}: {message}", {field: [message]})


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


# --- Authentication, method and CSRF checks ---------------------------------------------------

class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, answering the reason for a rejection instead of a page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def csrf_failure(request: HttpRequest) -> str | None:
    """Why the request fails Django's CSRF protection, or None when it passes."""
    check = _CsrfCheck(lambda req: None)  # type: ignore[arg-type]
    check.process_request(request)
    return check.process_view(request, None, (), {})  # type: ignore[arg-type]


def _not_signed_in() -> JsonResponse:
    return error(401, "Authentication required: sign in at the login page (a session cookie), "
                      "then call the API with that cookie.", login_url=reverse("login"))


def api_view(*methods: str) -> Callable[[View], View]:
    """Make ``view`` a JSON endpoint: 401 for anonymous users, 405 for other methods, 403 for
    unsafe methods without a valid CSRF token, 404 JSON for missing (or not owned) objects."""
    allowed = frozenset(methods)

    def decorate(view: View) -> View:
        @csrf_exempt  # checked below, after sign-in, so that the failure is JSON too
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return _not_signed_in()
            if request.method not in allowed:
                response = error(405, f"Method {request.method} is not allowed here; allowed: "
                                      f"{', '.join(sorted(allowed))}.")
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            if request.method not in SAFE_METHODS:
                try:
                    reason = csrf_failure(request)
                except (MultiPartParserError, SuspiciousOperation, BadRequest) as exc:
                    return error(400, f"The request body could not be read: {exc}")
                if reason:
                    return error(403, f"CSRF check failed: {reason.rstrip('.')}. Send the csrftoken "
                                      "cookie's value in the X-CSRFToken header.")
            try:
                return view(request, *args, **kwargs)
            except Http404:
                return error(404, "Not found: no such audit among those you can see.")
        return wrapper
    return decorate


# --- Serialisation ----------------------------------------------------------------------------

def audit_urls(audit: Audit) -> dict[str, str]:
    """Where to find the audit: API endpoints and the audit's page."""
    return {"self": reverse("audits:api-detail", args=[audit.pk]),
            "progress": reverse("audits:api-progress", args=[audit.pk]),
            "results": reverse("audits:api-results", args=[audit.pk]),
            "cancel": reverse("audits:api-cancel", args=[audit.pk]),
            "page": reverse("audits:detail", args=[audit.pk])}


def audit_brief(audit: Audit) -> dict[str, Any]:
    """One audit in a list."""
    return {"id": audit.pk, "name": audit.name, "owner": audit.owner.get_username(),
            "state": audit.state, "state_label": audit.get_state_display(),
            "created_at": _iso(audit.created_at), "n_images_planned": audit.n_images_planned,
            "urls": audit_urls(audit)}


def audit_full(audit: Audit) -> dict[str, Any]:
    """One audit with its config, error, timestamps and progress (with disk use)."""
    from webapp.audits.views import progress_with_disk_use

    return {**audit_brief(audit), "final": audit.is_final, "error": audit.error,
            "seed": audit.seed, "config": audit.config,
            "started_at": _iso(audit.started_at), "finished_at": _iso(audit.finished_at),
            "updated_at": _iso(audit.updated_at),
            "has_results": audit.state == Audit.State.DONE and hasattr(audit, "result"),
            "progress": progress_with_disk_use(audit)}


# --- List and create --------------------------------------------------------------------------

@api_view("GET", "POST")
def audits(request: HttpRequest) -> HttpResponse:
    """``GET``: the user's audits (staff: all), newest first, paginated. ``POST``: create one."""
    if request.method == "POST":
        return create_audit(request)
    return list_audits(request)


def list_audits(request: HttpRequest) -> JsonResponse:
    """A page of audits (``?page=``, 1-based, PAGE_SIZE per page)."""
    qs = visible_audits(request).select_related("owner")
    raw = request.GET.get("page", "1")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        return field_error("page", "a whole number from 1, e.g. ?page=2")
    paginator = Paginator(qs.order_by("-created_at", "-pk"), PAGE_SIZE)
    try:
        page = paginator.page(int(raw))
    except EmptyPage:
        return error(404, f"page {raw} does not exist; there are {paginator.num_pages} page(s)")
    base = reverse("audits:api-list")
    return JsonResponse({
        "count": paginator.count, "page": page.number, "pages": paginator.num_pages,
        "page_size": PAGE_SIZE,
        "next": f"{base}?page={page.next_page_number()}" if page.has_next() else None,
        "previous": f"{base}?page={page.previous_page_number()}" if page.has_previous() else None,
        "results": [audit_brief(a) for a in page.object_list]})


def create_audit(request: HttpRequest) -> HttpResponse:
    """Validate a JSON config (the config-file schema) and enqueue the audit: 201 + Location,
    with the design's ``plan``. ``?check=1`` only validates and plans (200, nothing created);
    ``?planning_fnmr=`` and ``?planning_icc=`` set the plan's assumptions."""
    from webapp.audits.launch import (
        ModelsMissing,
        QueueFull,
        launch_audit,
        max_queued_images,
        queued_images,
    )

    options = plan_options(request)
    if isinstance(options, HttpResponse):
        return options
    check_only, assumptions = options
    data = read_json(request)
    if isinstance(data, HttpResponse):
        return data
    config = validate_config(data)
    if isinstance(config, HttpResponse):
        return config
    plan = design_plan(config, assumptions)
    if check_only:
        return JsonResponse({"valid": True, "config": config.to_dict(),
                             "n_images_planned": config.n_images, "plan": plan})
    try:
        audit = launch_audit(request.user, config)
    except ModelsMissing as exc:
        return error(409, str(exc), {"models": [str(exc)]})
    except QueueFull as exc:
        return error(429, str(exc), {"config": [str(exc)]},
                     queued_images=queued_images(request.user),
                     max_queued_images=max_queued_images())
    response = JsonResponse({**audit_full(audit), "plan": plan}, status=201)
    response["Location"] = request.build_absolute_uri(reverse("audits:api-detail",
                                                              args=[audit.pk]))
    return response


_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"", "0", "false", "no"})


def plan_options(request: HttpRequest) -> tuple[bool, Assumptions] | JsonResponse:
    """``(check only, planning assumptions)`` from the query string, or a 400 naming the
    parameter at fault."""
    raw = request.GET.get("check", "").strip().lower()
    if raw not in _TRUE | _FALSE:
        return field_error("check", "1 or true to validate and plan without creating the audit; "
                                    "0, false or absent to create it")
    try:
        assumptions = parse_assumptions(request.GET.get("planning_fnmr"),
                                        request.GET.get("planning_icc"))
    except PlanningError as exc:
        errors = {field: [message] for field, message in exc.errors.items()}
        return error(400, "Invalid planning values; fix the parameters named in errors: "
                     + ", ".join(errors), errors)
    return raw in _TRUE, assumptions


def design_plan(config: AuditConfig, assumptions: Assumptions) -> dict[str, Any]:
    """What the design can show (:func:`audit.planner.plan_for_config`), as JSON."""
    return plan_for_config(config, assumptions,
                           seconds_per_image=settings.FACEAUDIT_SECONDS_PER_IMAGE).to_dict()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def read_json(request: HttpRequest) -> Any:
    """The request's JSON body, or an error response (wrong type 415, too large 413, else 400)."""
    if request.content_type != "application/json":
        return error(415, f"Send the config as JSON with 'Content-Type: application/json' "
                          f"(got {request.content_type or 'none'!r}).",
                     {"body": ["must be application/json"]})
    too_large = error(413, f"The body is larger than the limit of {MAX_BODY_BYTES:,} bytes; "
                           "a config is a few hundred bytes.", {"body": ["too large"]})
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
            return too_large
        body = request.body
    except (ValueError, SuspiciousOperation):
        return too_large
    if len(body) > MAX_BODY_BYTES:
        return too_large
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd numbers, nesting
        message = f"not valid JSON ({str(exc)[:200]})"
        return error(400, f"The body is {message}.", {"body": [message]})


def unstorable_value(data: Any) -> tuple[str, str] | None:
    """``(field, message)`` for the first string or number the database cannot store (NUL
    characters, unpaired surrogates, integers beyond 64 bits), else None. Fields are named as
    in :class:`generator.config.ConfigError` (``factors.blur``)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        field = path or "config"
        if isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem:
                    return field, f"a key {problem}"
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((path, item) for item in value)
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                return field, f"a text {problem}"
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ABS_INT:
            return field, "a number far too large for this field"
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000); remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate escape (e.g. \\ud800); send valid Unicode"
    return None


def validate_config(data: Any):
    """An :class:`AuditConfig`, or a 400 response whose ``errors`` name each field at fault."""
    problem = unstorable_value(data)
    if problem:
        return field_error(*problem)
    try:
        config = parse_config(data, fr_models_available=available_fr_models(),
                              generators_available=available_generators())
        problem = identity_judge_problem(config)
        return field_error("fr_models", problem) if problem else config
    except ConfigError as exc:
        errors = {field or "config": [message if field else f"a field with an empty name: "
                                      f"{message}"] for field, message in exc.errors.items()}
        return error(400, "The config is invalid; fix the fields named in errors: "
                     + ", ".join(errors), errors)
    except (TypeError, ValueError, OverflowError):  # a parse_config bug: say so, never a 500
        log.exception("parse_config failed on unexpected input")
        return field_error("config", "a value of the wrong type or form; see docs/api.md for "
                                     "the schema")


# --- One audit --------------------------------------------------------------------------------

@api_view("GET")
def audit_detail(request: HttpRequest, pk: int) -> JsonResponse:
    """The audit: config, state, error, timestamps and progress."""
    return JsonResponse(audit_full(owned_audit(request, pk)))


@api_view("GET")
def audit_progress(request: HttpRequest, pk: int) -> JsonResponse:
    """Per-stage progress and disk use: the same JSON as the page's ``progress.json``."""
    from webapp.audits.views import progress_with_disk_use

    return JsonResponse(progress_with_disk_use(owned_audit(request, pk)))


@api_view("POST")
def audit_cancel(request: HttpRequest, pk: int) -> JsonResponse:
    """Cancel an unfinished audit (images made so far are kept); 409 when already final."""
    from worker.dispatch import cancel_audit

    audit = owned_audit(request, pk)
    if not cancel_audit(audit.pk):
        return error(409, f"The audit had already finished ({audit.get_state_display()}); "
                          "nothing to cancel.", state=audit.state)
    audit.refresh_from_db()
    return JsonResponse({"cancelled": True, "message": "Audit cancelled. Images made so far "
                                                      "are kept.", "audit": audit_full(audit)})


@api_view("GET")
def audit_results(request: HttpRequest, pk: int) -> JsonResponse:
    """The stored summary; ``?fr_model=`` picks one model's block, ``&operating_point=`` one
    operating point (its label, e.g. ``FMR 0.001``, or its target FMR, e.g. ``0.001``)."""
    audit = owned_audit(request, pk)
    result = getattr(audit, "result", None) if audit.state == Audit.State.DONE else None
    if result is None:
        return error(409, f"The audit has no results yet (state: {audit.get_state_display()}); "
                          "they are served once it is done.", state=audit.state)
    return select_results(AuditSummary.of(result.summary), request.GET.get("fr_model"),
                          request.GET.get("operating_point"))


def select_results(summary: AuditSummary, fr_model: str | None,
                   operating_point: str | None) -> JsonResponse:
    """The whole summary, one FR model's block, or one operating point (per model or for one);
    a point is named by its label or its target FMR (:meth:`audit.summary.ModelResult.point`)."""
    models = summary.models
    if fr_model is None and operating_point is None:
        return JsonResponse(summary.raw)
    if fr_model is not None and fr_model not in models:
        return field_error("fr_model", f"unknown FR model {fr_model[:100]!r}; choose from "
                                       f"{', '.join(models) or '(none)'}")
    chosen = [fr_model] if fr_model is not None else list(models)
    if operating_point is None:
        return JsonResponse({"fr_model": fr_model, **models[fr_model].raw})
    points = {m: models[m].point(operating_point) for m in chosen}
    if any(p is None for p in points.values()) or not points:
        labels = sorted({label for m in chosen for label in models[m].labels})
        return field_error("operating_point", f"unknown operating point "
                                              f"{operating_point[:100]!r}; choose from "
                                              f"{', '.join(labels) or '(none)'}")
    if fr_model is not None:
        return JsonResponse({"fr_model": fr_model, "operating_point": points[fr_model].raw})
    return JsonResponse({"operating_point": operating_point,
                         "fr_models": {m: p.raw for m, p in points.items()}})
