//! The OpenAPI 3.0 document of `/api/`, served at `/api/openapi.json` (public: it holds no
//! secret, and tools need it before they can log in). `docs/ref/api.md` is its prose
//! companion; keep both in step with `api.rs`.

use std::sync::LazyLock;

use serde_json::{json, Value};

fn op(summary: &str, unsafe_method: bool, responses: Value) -> Value {
    let mut sec = json!({ "session": [] });
    if unsafe_method {
        sec["csrf"] = json!([]);
    }
    let mut r = responses;
    r["401"] = json!({ "$ref": "#/components/responses/Unauthorized" });
    if unsafe_method {
        r["403"] = json!({ "$ref": "#/components/responses/Forbidden" });
    }
    json!({ "summary": summary, "security": [sec], "responses": r })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn ok_json(schema: Value) -> Value {
    json!({ "description": "OK", "content": { "application/json": { "schema": schema } } })
}

fn err(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn with_body(mut op: Value, b: Value) -> Value {
    op["requestBody"] = b;
    op
}

fn id_param() -> Value {
    json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 200 } }])
}

fn build() -> Value {
    let nullable_num = json!({ "type": "number", "nullable": true });
    let opt_str = json!({ "type": "string", "nullable": true });
    let config = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "source": { "type": "string", "example": "v4l2:/dev/video0" },
            "realtime": { "type": "boolean" },
            "width": { "type": "integer", "minimum": 0 },
            "height": { "type": "integer", "minimum": 0 },
            "fps": { "type": "number" },
            "audio_device": { "type": "string" },
            "audio_buffer_ms": { "type": "integer", "minimum": 0 },
            "realtime_audio": { "type": "boolean" },
            "listen": { "type": "string", "example": "127.0.0.1:9750" },
            "report": opt_str,
            "record": opt_str,
            "music": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "genre": { "type": "string", "nullable": true, "enum": ["lofi", "pop", "ambient", "cinematic", "acoustic", null] },
                    "mood": { "type": "string", "nullable": true, "enum": ["happy", "calm", "dark", "epic", null] },
                    "energy": nullable_num,
                    "instrument": { "type": "string", "nullable": true, "enum": ["piano", "guitar", "strings", "synth", "flute", null] },
                    "tempo": nullable_num,
                    "seed": { "type": "integer", "minimum": 0 }
                }
            },
            "web": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "data_dir": { "type": "string" },
                    "volume_db": { "type": "number" },
                    "schedule": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "enabled": { "type": "boolean" },
                            "start": { "type": "string", "example": "08:00" },
                            "stop": { "type": "string", "example": "23:00" }
                        }
                    },
                    "board": { "type": "string" },
                    "session_hours": { "type": "integer", "minimum": 0 }
                }
            }
        }
    });
    let config_out = json!({
        "type": "object",
        "required": ["config", "toml"],
        "properties": { "config": { "$ref": "#/components/schemas/Config" }, "toml": { "type": "string" } }
    });
    let template = json!({
        "type": "object",
        "required": ["id", "style", "mood", "tempo_bpm", "progression", "layer", "source"],
        "properties": {
            "id": { "type": "string" }, "style": { "type": "string" }, "mood": { "type": "string" },
            "energy": { "type": "number" }, "tempo_bpm": { "type": "number" },
            "progression": { "type": "string" }, "bars": { "type": "integer" },
            "layer": { "type": "integer" }, "instruments": { "type": "array", "items": { "type": "string" } },
            "frames": { "type": "integer" }, "intro_frames": { "type": "integer" },
            "source": { "type": "string", "enum": ["builtin", "user"] }
        }
    });
    let queued = json!({ "description": "Queued for the engine's next bar", "content": { "application/json": { "schema": { "type": "object", "properties": { "queued": { "type": "string" } } } } } });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "undertone box API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The local web page's JSON API. Every operation needs the session cookie (log in with POST /auth/login, see docs/ref/api.md); every state change also needs the session's CSRF token in X-CSRF-Token."
        },
        "paths": {
            "/api/status": { "get": op("What plays now, device states, options after a dislike", false, json!({ "200": ok_json(json!({ "$ref": "#/components/schemas/Status" })) })) },
            "/api/series": { "get": {
                "parameters": [{ "name": "since", "in": "query", "required": false, "schema": { "type": "number" }, "description": "Only points after this time (s on the master clock)" }],
                "summary": "Live plot points: features per frame, bars",
                "security": [{ "session": [] }],
                "responses": { "200": ok_json(json!({ "type": "object", "required": ["features", "bars"], "properties": { "features": { "type": "array", "items": { "type": "object" } }, "bars": { "type": "array", "items": { "type": "object" } } } })), "400": err("since is not a number"), "401": { "$ref": "#/components/responses/Unauthorized" } }
            } },
            "/api/events": { "get": op("Server-sent events: `update` with status, new feature points and bars (~4 Hz)", false, json!({ "200": { "description": "An event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } } })) },
            "/api/snapshot.png": { "get": op("The latest camera frame (grayscale PNG)", false, json!({ "200": { "description": "PNG", "content": { "image/png": { "schema": { "type": "string", "format": "binary" } } } }, "404": err("No frame yet") })) },
            "/api/refine": { "post": with_body(op("Like, dislike or undo; applied from the next bar", true, json!({ "202": queued, "400": err("Unknown action"), "415": err("Not JSON"), "429": err("The engine has too many commands waiting") })),
                body(json!({ "type": "object", "required": ["action"], "additionalProperties": false, "properties": { "action": { "type": "string", "enum": ["like", "dislike", "undo"] } } }))) },
            "/api/refine/apply": { "post": with_body(op("Apply a refinement option from the next bar", true, json!({ "202": queued, "400": err("Unknown option"), "415": err("Not JSON"), "429": err("The engine has too many commands waiting") })),
                body(json!({ "type": "object", "required": ["option"], "additionalProperties": false, "properties": { "option": { "type": "string", "example": "calmer" } } }))) },
            "/api/refine/options": { "get": op("Options that fit the music now playing", false, json!({ "200": ok_json(json!({ "type": "object", "properties": { "disliked": { "type": "boolean" }, "undo_depth": { "type": "integer" }, "options": { "type": "array", "items": { "type": "object", "properties": { "name": { "type": "string" }, "description": { "type": "string" } } } } } })) })) },
            "/api/config": {
                "get": op("The config file as JSON and TOML", false, json!({ "200": ok_json(config_out.clone()) })),
                "put": with_body(op("Validate, save atomically and apply a new config", true, json!({ "200": ok_json(config_out.clone()), "400": err("Invalid: names the key and the valid range"), "415": err("Not JSON"), "429": err("The engine has too many commands waiting") })), body(json!({ "$ref": "#/components/schemas/Config" })))
            },
            "/api/config/backup": { "get": op("Download the config (TOML)", false, json!({ "200": { "description": "config.toml", "content": { "application/toml": { "schema": { "type": "string" } } } } })) },
            "/api/config/restore": { "post": with_body(op("Replace the config with a backup; a bad file changes nothing", true, json!({ "200": ok_json(config_out), "400": err("Invalid: names the key; nothing changed"), "413": err("Over 64 KiB"), "429": err("The engine has too many commands waiting") })),
                json!({ "required": true, "content": { "application/toml": { "schema": { "type": "string" } } } })) },
            "/api/devices": { "get": op("Cameras and ALSA playback devices seen now", false, json!({ "200": ok_json(json!({ "type": "object", "properties": { "cameras": { "type": "array", "items": { "type": "string" } }, "pcms": { "type": "array", "items": { "type": "object" } } } })) })) },
            "/api/templates": {
                "get": op("Built-in and uploaded templates", false, json!({ "200": ok_json(json!({ "type": "array", "items": template })) })),
                "post": with_body(op("Upload a template (validated, then stored)", true, json!({ "201": ok_json(json!({ "type": "object" })), "400": err("Malformed upload or id"), "409": err("The id exists"), "413": err("Over the upload limit (refused before storing)"), "422": err("Format, sample rate, length, MIDI or metadata rejected, with the reason"), "429": err("The engine has too many commands waiting") })),
                    json!({ "required": true, "content": { "multipart/form-data": { "schema": { "type": "object", "required": ["meta", "audio", "midi"], "properties": {
                        "meta": { "type": "string", "description": "JSON: id, style, mood, energy, tempo_bpm, progression, layer, instruments" },
                        "audio": { "type": "string", "format": "binary", "description": "Ogg Vorbis, 48 kHz stereo, four bars (plus an optional intro bar)" },
                        "midi": { "type": "string", "format": "binary", "description": "The loop's MIDI pattern" } } } } } }))
            },
            "/api/templates/{id}": { "delete": { "parameters": id_param(), "summary": "Delete an uploaded template", "security": [{ "session": [], "csrf": [] }],
                "responses": { "200": ok_json(json!({ "type": "object" })), "400": err("Not a template id"), "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" }, "404": err("No such template"), "429": err("The engine has too many commands waiting") } } },
            "/api/templates/{id}/audio": { "get": { "parameters": id_param(), "summary": "A template's audio, for preview", "security": [{ "session": [] }],
                "responses": { "200": { "description": "Ogg Vorbis", "content": { "audio/ogg": { "schema": { "type": "string", "format": "binary" } } } }, "400": err("Not a template id"), "401": { "$ref": "#/components/responses/Unauthorized" }, "404": err("No such template") } } },
            "/api/system": { "get": op("Version, uptime, paths and recent log lines", false, json!({ "200": ok_json(json!({ "type": "object", "properties": { "firmware": { "type": "string" }, "uptime_s": { "type": "number" }, "logs": { "type": "array", "nullable": true, "items": { "type": "string" } } } })) })) },
            "/api/system/password": { "post": with_body(op("Change the password (ends the other sessions)", true, json!({ "200": ok_json(json!({ "type": "object" })), "400": err("Malformed body"), "415": err("Not JSON"), "422": err("The new password is too short or too long"), "429": err("Too many wrong passwords; Retry-After says when") })),
                body(json!({ "type": "object", "required": ["current", "new"], "additionalProperties": false, "properties": { "current": { "type": "string" }, "new": { "type": "string" } } }))) },
            "/api/system/restart": { "post": op("Restart the service (systemd starts it again)", true, json!({ "202": { "description": "Restarting" } })) }
        },
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": "ut_session" },
                "csrf": { "type": "apiKey", "in": "header", "name": "X-CSRF-Token" }
            },
            "responses": {
                "Unauthorized": err("No valid session: log in first"),
                "Forbidden": err("Missing or wrong CSRF token, or a cross-site request")
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "Config": config,
                "Status": { "type": "object", "required": ["bar", "tempo_bpm", "camera", "audio", "underruns", "options"], "properties": {
                    "bar": { "type": "integer" }, "section": { "type": "integer" }, "tempo_bpm": { "type": "number" },
                    "genre": { "type": "string" }, "mood": { "type": "string" }, "instrument": { "type": "string" }, "template": { "type": "string" },
                    "level_rms_dbfs": nullable_num, "level_peak_dbfs": nullable_num,
                    "camera": { "type": "string" }, "audio": { "type": "string" }, "underruns": { "type": "integer" },
                    "options": { "type": "array", "items": { "type": "string" } }, "disliked": { "type": "boolean" }, "undo_depth": { "type": "integer" } } }
            }
        }
    })
}

/// The document as served.
pub static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(&build()).expect("the document serialises"));

/// The `(method, path)` of every documented operation.
pub fn operations() -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(&DOCUMENT).expect("valid JSON");
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (p, item) in paths {
            if let Some(ops) = item.as_object() {
                for m in ops.keys() {
                    out.push((m.to_uppercase(), p.clone()));
                }
            }
        }
    }
    out
}
