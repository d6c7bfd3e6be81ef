//! The routes of the HTTP API and their handlers. `docs/http-api.yaml` describes them.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::auth::{self, Authenticator, Denied, Scope};
use super::limit::{Limiter, Rate};
use super::{HttpSettings, Peer, Shared, BODY_TIMEOUT};
use crate::audit::{Event, Record};
use crate::control::{self, Reply, Request as Command};
use crate::events::{self, Since};
use crate::metrics::Gauges;
use crate::recognizer::{PhotoError, PhotoResult};
use crate::service::Input;

/// The largest photo body `recognize` accepts.
pub const MAX_PHOTO_BYTES: usize = 8 << 20;
/// The largest classifier upload.
pub const MAX_CLASSIFIER_BYTES: usize = 8 << 20;
/// The largest JSON body (unlock, mode).
const MAX_JSON_BYTES: usize = 4096;
/// How long an upload waits for the vision thread to put the new classifier into service.
const RELOAD_WAIT: Duration = Duration::from_secs(15);
/// A live preview ends after this; the client reconnects.
const PREVIEW_LIMIT: Duration = Duration::from_secs(300);
/// Auth failures audited per client address: one a minute (metrics count them all).
const AUDITED_FAILURES: Rate = Rate {
    capacity: 1,
    refill_every: Duration::from_secs(60),
};

/// The server's state.
pub(super) struct App {
    shared: Shared,
    settings: HttpSettings,
    auth: Mutex<Authenticator>,
    audited_failures: Mutex<Limiter<IpAddr>>,
    /// One uploaded photo is recognised at a time.
    recognizing: Arc<Semaphore>,
    /// Reads of the audit log at a time.
    reading: Arc<Semaphore>,
    /// One classifier upload at a time.
    uploading: Arc<tokio::sync::Mutex<()>>,
}

impl App {
    pub(super) fn new(settings: &HttpSettings, shared: Shared) -> Arc<App> {
        Arc::new(App {
            auth: Mutex::new(Authenticator::new(settings.tokens.clone())),
            audited_failures: Mutex::new(Limiter::new(AUDITED_FAILURES, 1024)),
            recognizing: Arc::new(Semaphore::new(1)),
            reading: Arc::new(Semaphore::new(2)),
            uploading: Arc::new(tokio::sync::Mutex::new(())),
            settings: settings.clone(),
            shared,
        })
    }

    /// Sends a record to the door loop's audit log without ever waiting.
    fn audit(&self, record: Record) {
        if let Err(e) = self.shared.inputs.try_send(Input::Audit(record)) {
            log::warn!("HTTP API: an audit record was dropped (the door loop is busy): {e}");
        }
    }
}

pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}/snapshot", get(snapshot))
        .route("/api/v1/recognize", post(recognize))
        // The form as a whole (headers included) is limited, not only its fields.
        .route(
            "/face-recognition",
            post(compat_recognize).layer(axum::extract::DefaultBodyLimit::max(
                MAX_PHOTO_BYTES + 64 * 1024,
            )),
        )
        .route("/api/v1/door/unlock", post(unlock))
        .route("/api/v1/door/mode", put(set_mode))
        .route(
            "/api/v1/capture",
            post(start_capture).delete(cancel_capture),
        )
        .route("/api/v1/preview.mjpeg", get(preview))
        .route("/api/v1/classifier", put(upload_classifier))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        // Every handler reads its body itself, with its own limit and time limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

// -----------------------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------------------

/// An error reply: `{"error": "..."}` (or `{"message": "..."}` on the compatibility route).
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
    /// Answer in the face-recognition framework's shape.
    compat: bool,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            compat: false,
        }
    }

    fn retry_after(mut self, wait: Duration) -> ApiError {
        self.retry_after = Some(wait);
        self
    }

    fn compat(mut self) -> ApiError {
        self.compat = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let key = if self.compat { "message" } else { "error" };
        let mut response = (self.status, Json(json!({ key: self.message }))).into_response();
        let headers = response.headers_mut();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"facelock\""),
            );
        }
        response
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn busy(what: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, what).retry_after(Duration::from_secs(1))
}

// -----------------------------------------------------------------------------------------
// Every request: credentials in the URL, metrics
// -----------------------------------------------------------------------------------------

async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let refused = request
        .uri()
        .query()
        .is_some_and(auth::query_carries_credentials);
    let response = if refused {
        let peer = peer_ip(&request);
        app.shared.metrics.auth_failure();
        audit_failure(
            &app,
            peer,
            &request,
            "a credential in the URL (refused unread)",
        );
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "credentials in the URL are refused: URLs end up in logs and browser history. \
             Send the token in the header `Authorization: Bearer <token>`, and treat a token \
             that was in a URL as leaked (make a new one with `lock-daemon token new`)",
        )
        .into_response()
    } else {
        next.run(request).await
    };
    app.shared.metrics.http_response(response.status().as_u16());
    response
}

fn peer_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<Peer>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip())
}

/// One audit record per client address a minute; the metrics count every failure.
fn audit_failure(app: &App, peer: IpAddr, request: &Request, why: &str) {
    let first = app
        .audited_failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take(&peer, Instant::now())
        .is_ok();
    if first {
        let what = format!("{} {}", request.method(), request.uri().path());
        log::warn!("HTTP API: {what} from {peer}: {why}");
        app.audit(
            Record::new(Event::AuthFailure)
                .by(format!("HTTP client {peer}"))
                .message(format!(
                    "{}: {why} (further failures from this address for a minute are only \
                     counted in the metrics)",
                    crate::config::clip(&what)
                )),
        );
    }
}

/// Who made an authenticated request, for the audit log.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    peer: IpAddr,
}

impl Caller {
    fn by(&self) -> String {
        format!("token \"{}\" via HTTP from {}", self.name, self.peer)
    }
}

fn authorize(app: &App, request: &Request, scope: Scope) -> ApiResult<Caller> {
    let peer = peer_ip(request);
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let outcome = app
        .auth
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .authorize(presented, peer, scope, Instant::now())
        .map(|entry| entry.name.clone());
    match outcome {
        Ok(name) => Ok(Caller { name, peer }),
        Err(denied) => {
            app.shared.metrics.auth_failure();
            let error = match &denied {
                Denied::Missing => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "no token: send `Authorization: Bearer <token>` (make one with \
                     `lock-daemon token new NAME --scope ...`)",
                ),
                Denied::Wrong => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the token is not valid; check it against the [[http.token]] hashes in \
                     the lock's configuration",
                ),
                Denied::Scope { name, needs } => ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("token \"{name}\" lacks the \"{needs}\" scope this needs"),
                ),
                Denied::Limited { retry_after } => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed attempts from this address; wait and retry",
                )
                .retry_after(*retry_after),
            };
            let why = match denied {
                Denied::Missing => "no token".to_owned(),
                Denied::Wrong => "wrong token".to_owned(),
                Denied::Scope { name, needs } => format!("token \"{name}\" lacks \"{needs}\""),
                Denied::Limited { .. } => "rate-limited after repeated failures".to_owned(),
            };
            audit_failure(app, peer, request, &why);
            Err(error)
        }
    }
}

// -----------------------------------------------------------------------------------------
// Bodies
// -----------------------------------------------------------------------------------------

/// Reads a body of at most `limit` bytes within [`BODY_TIMEOUT`].
async fn read_body(request: Request, limit: usize) -> ApiResult<Bytes> {
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the {} KiB limit", limit >> 10),
        )
    };
    if let Some(declared) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if declared > limit as u64 {
            return Err(too_big());
        }
    }
    let mut stream = request.into_body().into_data_stream();
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                )
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ))
        })
}

/// The media type of the request, lower case, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn require_type(headers: &HeaderMap, allowed: &[&str]) -> ApiResult<()> {
    let got = content_type(headers);
    if allowed.contains(&got.as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {:?} is not accepted here; send {}",
                crate::config::clip(&got),
                allowed.join(" or ")
            ),
        ))
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(request: Request) -> ApiResult<T> {
    require_type(request.headers(), &["application/json"])?;
    let body = read_body(request, MAX_JSON_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("not the expected JSON: {e}"),
        )
    })
}

/// Runs blocking work on the HTTP helper threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        log::error!("HTTP API: a worker failed: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

// -----------------------------------------------------------------------------------------
// Health, status, metrics
// -----------------------------------------------------------------------------------------

/// The door loop publishes every 50 ms; older than this, it is stuck.
const LOOP_ALIVE: Duration = Duration::from_secs(2);
/// A camera without a frame for this long is not delivering (a stalled driver, an
/// unplugged cable, a replay that ended).
const CAMERA_SILENT_SECS: f64 = 5.0;

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let status = app.shared.board.get();
    let alive = status.fresh(LOOP_ALIVE);
    let delivering = status.camera_ok && status.last_frame_secs <= CAMERA_SILENT_SECS;
    if alive && delivering {
        (StatusCode::OK, Json(json!({"ok": true}))).into_response()
    } else {
        let why = if alive {
            "the camera delivers no frames"
        } else {
            "the door loop is not running"
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ok": false, "error": why})),
        )
            .into_response()
    }
}

async fn status(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    authorize(&app, &request, Scope::Read)?;
    Ok(Json(app.shared.board.json()).into_response())
}

async fn metrics(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    if !app.settings.metrics_without_token {
        authorize(&app, &request, Scope::Read)?;
    }
    let status = app.shared.board.get();
    let gauges = Gauges {
        rss_bytes: rss_bytes(),
        uptime_secs: status.uptime_secs,
        locked: status.lock == "locked",
        camera_ok: status.camera_ok,
        people_enrolled: status.enrolled.len(),
    };
    let text = app.shared.metrics.render(&gauges);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// The process's resident memory, from /proc.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {} (see docs/http-api.yaml)",
            request.method(),
            crate::config::clip(request.uri().path())
        ),
    )
}

// -----------------------------------------------------------------------------------------
// Events and snapshots
// -----------------------------------------------------------------------------------------

#[derive(Debug, serde::Deserialize)]
struct EventsQuery {
    since: Option<String>,
    limit: Option<usize>,
}

async fn list_events(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    authorize(&app, &request, Scope::Read)?;
    let query: EventsQuery = serde_urlencoded_query(&request)?;
    let since = query
        .since
        .as_deref()
        .map(str::parse::<Since>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > events::MAX_LIMIT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..={}", events::MAX_LIMIT),
        ));
    }
    let Ok(_permit) = app.reading.clone().try_acquire_owned() else {
        return Err(busy("the event log is being read by other clients; retry"));
    };
    let log = app.shared.settings.audit.log.clone();
    let page = blocking(move || events::read(&log, since.as_ref(), limit))
        .await?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the audit log: {e}"),
            )
        })?;
    Ok(Json(json!({"events": page.events, "last_id": page.last_id})).into_response())
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(request: &Request) -> ApiResult<T> {
    axum::extract::Query::<T>::try_from_uri(request.uri())
        .map(|q| q.0)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn snapshot(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> ApiResult {
    authorize(&app, &request, Scope::Read)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "the event id is a number (the `id` of an event from /api/v1/events)",
        )
    })?;
    let Some(snapshots) = app.shared.settings.audit.snapshots.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "snapshots are off (audit.snapshots)",
        ));
    };
    let log = app.shared.settings.audit.log.clone();
    let found = blocking(move || -> std::io::Result<Option<Vec<u8>>> {
        let Some(record) = events::get(&log, id)? else {
            return Ok(None);
        };
        let Some(name) = events::snapshot_name(&record) else {
            return Ok(None);
        };
        match std::fs::read(snapshots.dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            // Pruned by the retention count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await?
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the snapshot: {e}"),
        )
    })?;
    match found {
        Some(jpeg) => Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            jpeg,
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("event {id} has no snapshot (none taken, or pruned by audit.snapshots_keep)"),
        )),
    }
}

// -----------------------------------------------------------------------------------------
// Recognition of uploaded photos
// -----------------------------------------------------------------------------------------

/// The one place to recognise an uploaded photo, taken before its body is read (so at most
/// one photo body is in memory); 503 when taken.
fn recognition_permit(app: &App) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    app.recognizing.clone().try_acquire_owned().map_err(|_| {
        app.shared.metrics.busy();
        busy("busy recognising another photo; retry in a second (the door comes first)")
    })
}

/// Recognises one photo on a helper thread, holding the permit until it is done.
async fn recognize_photo(
    app: &App,
    permit: tokio::sync::OwnedSemaphorePermit,
    bytes: Bytes,
) -> ApiResult<PhotoResult> {
    let Some(photos) = app.shared.photos.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "recognition of uploaded photos is not available in this service",
        ));
    };
    let result = blocking(move || {
        let _permit = permit;
        photos.recognize_bytes(&bytes)
    })
    .await?;
    result.map_err(|e| match e {
        PhotoError::Image(reason) => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a usable JPEG or PNG photo: {reason}"),
        ),
        PhotoError::Recognition(reason) => {
            log::error!("HTTP API: recognition failed: {reason}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("recognition failed: {reason}"),
            )
        }
    })
}

async fn recognize(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    authorize(&app, &request, Scope::Read)?;
    require_type(request.headers(), &["image/jpeg", "image/png"])?;
    let permit = recognition_permit(&app)?;
    let bytes = read_body(request, MAX_PHOTO_BYTES).await?;
    let result = recognize_photo(&app, permit, bytes).await?;
    let faces: Vec<Value> = result
        .faces
        .iter()
        .map(|f| {
            json!({
                "box": {"left": f.bbox.x1, "top": f.bbox.y1, "right": f.bbox.x2, "bottom": f.bbox.y2},
                "label": f.prediction.label(),
                "person": f.prediction.identity,
                "nearest": f.prediction.nearest,
                "probability": f.prediction.probability,
                "similarity": f.prediction.similarity,
                "size_px": f.bbox.side().round(),
            })
        })
        .collect();
    Ok(Json(json!({
        "width": result.width,
        "height": result.height,
        "faces": faces,
    }))
    .into_response())
}

/// `POST /face-recognition`: the face-recognition framework's own API, so clients written
/// for it work unchanged. Unlike the framework, a face the open-set gate refuses is
/// labelled "unknown" instead of being given to the nearest person.
async fn compat_recognize(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    let compat = |e: ApiError| e.compat();
    if !app.settings.compat_without_token {
        authorize(&app, &request, Scope::Read).map_err(compat)?;
    }
    let mut include_predictions = request
        .uri()
        .query()
        .and_then(|q| {
            axum::extract::Query::<CompatQuery>::try_from_uri(request.uri())
                .ok()
                .filter(|_| !q.is_empty())
        })
        .and_then(|q| q.0.include_predictions)
        .is_some_and(|v| truthy(&v));
    if content_type(request.headers()) != "multipart/form-data" {
        return Err(compat(ApiError::new(
            StatusCode::BAD_REQUEST,
            "send the photo as multipart/form-data with a field named \"image\"",
        )));
    }
    let permit = recognition_permit(&app).map_err(compat)?;
    use axum::extract::FromRequest as _;
    let mut multipart = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|e| compat(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())))?;
    let read = async {
        let mut image = None;
        let mut total = 0usize;
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?
        {
            let name = field.name().unwrap_or("").to_owned();
            let mut data = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| ApiError::new(e.status(), e.body_text()))?
            {
                total += chunk.len();
                if total > MAX_PHOTO_BYTES {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the form is larger than the {} MiB limit",
                            MAX_PHOTO_BYTES >> 20
                        ),
                    ));
                }
                data.extend_from_slice(&chunk);
            }
            match name.as_str() {
                "image" => image = Some(Bytes::from(data)),
                "include_predictions" => {
                    include_predictions = truthy(&String::from_utf8_lossy(&data))
                }
                _ => {}
            }
        }
        Ok(image)
    };
    let image = tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the form did not arrive in time",
            ))
        })
        .map_err(compat)?;
    let Some(image) = image.filter(|i| !i.is_empty()) else {
        return Err(compat(ApiError::new(
            StatusCode::BAD_REQUEST,
            "No image provided: send it in a multipart field named \"image\"",
        )));
    };
    let result = recognize_photo(&app, permit, image).await.map_err(compat)?;
    let faces: Vec<Value> = result
        .faces
        .iter()
        .map(|f| {
            let mut all: Vec<&(String, f32)> = f.probabilities.iter().collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1));
            json!({
                "top_prediction": {
                    "label": f.prediction.label(),
                    "confidence": f.prediction.probability,
                },
                "bounding_box": {
                    "left": f.bbox.x1.round() as i64,
                    "top": f.bbox.y1.round() as i64,
                    "right": f.bbox.x2.round() as i64,
                    "bottom": f.bbox.y2.round() as i64,
                },
                "all_predictions": include_predictions.then(|| {
                    all.iter()
                        .map(|(label, p)| json!({"label": label, "confidence": p}))
                        .collect::<Vec<_>>()
                }),
            })
        })
        .collect();
    Ok(Json(json!({ "faces": faces })).into_response())
}

#[derive(Debug, serde::Deserialize)]
struct CompatQuery {
    include_predictions: Option<String>,
}

fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

// -----------------------------------------------------------------------------------------
// Door commands
// -----------------------------------------------------------------------------------------

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockBody {
    seconds: f64,
    reason: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    person: String,
    #[serde(default = "default_capture_count")]
    count: u32,
    #[serde(default = "default_capture_seconds")]
    seconds: f64,
}

fn default_capture_count() -> u32 {
    20
}

fn default_capture_seconds() -> f64 {
    60.0
}

/// Hands a command to the door loop (on a helper thread: the send and the wait block) and
/// maps its answer.
async fn command(app: &App, request: Command, by: String) -> ApiResult {
    let inputs = app.shared.inputs.clone();
    let reply: Reply = blocking(move || control::submit(&inputs, request, &by)).await?;
    if reply.ok {
        Ok(Json(json!({"ok": true, "message": reply.message})).into_response())
    } else if reply.message == control::STOPPING {
        Err(busy(&reply.message))
    } else if reply.message == control::NO_ANSWER {
        // It may still be carried out: no Retry-After, the client checks the status.
        Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "the door loop did not answer in time; the command may still be carried out: \
             check /api/v1/status before retrying",
        ))
    } else {
        Err(ApiError::new(StatusCode::CONFLICT, reply.message))
    }
}

async fn unlock(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    let caller = authorize(&app, &request, Scope::Unlock)?;
    let body: UnlockBody = json_body(request).await?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reason must be 1 to 200 characters of plain text (it goes into the audit log)",
        ));
    }
    if !(body.seconds.is_finite() && body.seconds > 0.0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "seconds must be a positive number (at most door.max_manual_unlock_secs)",
        ));
    }
    if let Err(wait) = app
        .auth
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take_unlock(&caller.name, Instant::now())
    {
        app.audit(
            Record::new(Event::Refused)
                .by(caller.by())
                .message("unlock: rate limit (3, then one per 10 s per token)"),
        );
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many unlock requests with this token; wait and retry",
        )
        .retry_after(wait));
    }
    command(
        &app,
        Command::Unlock {
            seconds: body.seconds,
            reason: reason.to_owned(),
        },
        caller.by(),
    )
    .await
}

async fn set_mode(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    let caller = authorize(&app, &request, Scope::Admin)?;
    let body: ModeBody = json_body(request).await?;
    if let Err(e) = body.mode.parse::<crate::door::Mode>() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, e));
    }
    command(&app, Command::Mode { mode: body.mode }, caller.by()).await
}

/// Starts a guided capture at the door, like `lock-daemon ctl capture`; progress is in the
/// status (`capture`).
async fn start_capture(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    let caller = authorize(&app, &request, Scope::Admin)?;
    let body: CaptureBody = json_body(request).await?;
    if let Err(e) = crate::capture::check_name(&body.person) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, e));
    }
    let request = Command::Capture {
        person: body.person,
        count: body.count,
        seconds: body.seconds,
    };
    command(&app, request, caller.by()).await
}

async fn cancel_capture(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    let caller = authorize(&app, &request, Scope::Admin)?;
    command(&app, Command::CaptureCancel, caller.by()).await
}

// -----------------------------------------------------------------------------------------
// Live preview
// -----------------------------------------------------------------------------------------

async fn preview(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    if !app.settings.preview {
        // Not even the token is looked at: the feature is absent.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the live preview is off; set http.preview = true to aim the camera (it shows \
             people's faces: turn it off again afterwards)",
        ));
    }
    let caller = authorize(&app, &request, Scope::Admin)?;
    let Some(viewer) = app.shared.preview.watch() else {
        return Err(busy("the preview already has its maximum of viewers"));
    };
    app.audit(
        Record::new(Event::Preview)
            .by(caller.by())
            .message("live preview opened"),
    );
    let min_face_px = app.shared.settings.recognition.min_face_px;
    let closing = PreviewClosing {
        app_inputs: app.shared.inputs.clone(),
        by: caller.by(),
        opened: Instant::now(),
    };
    let state = (viewer, 0u64, Instant::now(), closing);
    let stream =
        futures_util::stream::unfold(state, move |(viewer, seen, opened, closing)| async move {
            loop {
                if opened.elapsed() > PREVIEW_LIMIT {
                    return None;
                }
                if let Some(frame) = viewer.newer_than(seen) {
                    let seq = frame.seq;
                    let jpeg =
                        tokio::task::spawn_blocking(move || preview_jpeg(&frame, min_face_px))
                            .await
                            .ok()
                            .flatten()?;
                    let mut part = format!(
                        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    )
                    .into_bytes();
                    part.extend_from_slice(&jpeg);
                    part.extend_from_slice(b"\r\n");
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(part)),
                        (viewer, seq, opened, closing),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("multipart/x-mixed-replace; boundary=frame"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Audits the end of a preview when its stream is dropped (the client went away, or the
/// time limit).
struct PreviewClosing {
    app_inputs: std::sync::mpsc::SyncSender<Input>,
    by: String,
    opened: Instant,
}

impl Drop for PreviewClosing {
    fn drop(&mut self) {
        let record = Record::new(Event::Preview)
            .by(std::mem::take(&mut self.by))
            .message(format!(
                "live preview closed after {:.0} s",
                self.opened.elapsed().as_secs_f64()
            ));
        let _ = self.app_inputs.try_send(Input::Audit(record));
    }
}

/// The annotated frame as a JPEG: recognised faces with their names and scores, faces too
/// small to be recognised in amber, each with its size against `min_face_px`. Frames wider
/// than 1280 px are scaled down after drawing.
fn preview_jpeg(frame: &crate::preview::PreviewFrame, min_face_px: f32) -> Option<Vec<u8>> {
    let mut image = frame.image.clone();
    let options = recognition::annotate::AnnotateOptions {
        min_face_px: Some(min_face_px),
        ..Default::default()
    };
    for face in &frame.small {
        recognition::annotate::draw_face(&mut image, face, None, &options);
    }
    recognition::annotate::draw_recognized(&mut image, &frame.faces, &options);
    let image = recognition::photo::shrink_to(image, 1280);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 75)
        .encode_image(&image)
        .ok()?;
    Some(jpeg)
}

// -----------------------------------------------------------------------------------------
// Classifier upload
// -----------------------------------------------------------------------------------------

async fn upload_classifier(State(app): State<Arc<App>>, request: Request) -> ApiResult {
    let caller = authorize(&app, &request, Scope::Admin)?;
    require_type(request.headers(), &["application/octet-stream"])?;
    // Held until the install on the helper thread is done, even if the client goes away.
    let Ok(one_at_a_time) = app.uploading.clone().try_lock_owned() else {
        return Err(busy("another classifier upload is in progress"));
    };
    let bytes = read_body(request, MAX_CLASSIFIER_BYTES).await?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty; send the classifier file's bytes",
        ));
    }
    let Some(photos) = app.shared.photos.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "classifier upload is not available in this service",
        ));
    };
    let settings = app.shared.settings.clone();
    let installed = blocking(move || {
        let _one_at_a_time = one_at_a_time;
        crate::recognizer::install_classifier(&settings, photos.pipeline(), &bytes)
    })
    .await?;
    let installed = match installed {
        Ok(installed) => installed,
        Err(e) => {
            let status = match e {
                crate::recognizer::InstallError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                crate::recognizer::InstallError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let message = e.to_string();
            app.audit(
                Record::new(Event::Refused)
                    .by(caller.by())
                    .message(format!("classifier upload: {message}")),
            );
            return Err(ApiError::new(
                status,
                format!("{message}; the classifier in service is unchanged"),
            ));
        }
    };
    app.audit(
        Record::new(Event::ClassifierPushed)
            .by(caller.by())
            .message(format!(
                "sha256 {}, created {}, enrolled: {}",
                installed.sha256,
                installed.created,
                installed.people.join(", ")
            )),
    );
    app.shared.reload.store(true, Ordering::Relaxed);
    // The vision thread reloads between frames; wait (without blocking anything) until the
    // status shows the new file in service.
    let deadline = Instant::now() + RELOAD_WAIT;
    let in_service = loop {
        let status = app.shared.board.get();
        if status.classifier.sha256.as_deref() == Some(installed.sha256.as_str()) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = json!({
        "ok": in_service,
        "message": if in_service {
            "the new classifier is in service".to_owned()
        } else {
            format!(
                "written and checked, but not in service after {} s; see the events for the \
                 reload",
                RELOAD_WAIT.as_secs()
            )
        },
        "people": installed.people,
        "created": installed.created,
        "sha256": installed.sha256,
    });
    let code = if in_service {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(body)).into_response())
}
