// Alerts (issue 6): what the appliance tells its operators when something
// needs them — a failed or partial job, a missed slot, scrub damage, a failed
// drill — by webhook (an HTTP(S) POST of JSON) and/or email (SMTP).
//
// An `Alert` is a value; `AlertJson` and `AlertEmail` render it (the formats
// are specified in doc/formats/alerts.md). `Deliver` sends one alert through
// each configured channel with libcurl, blocking. The `Alerter` is what
// custosd uses: `Post` only queues, a background thread delivers with
// retries, so the daemon's event loop never waits on the network.
//
// Secrets (the webhook header or token, the SMTP password) are read from
// the config or their files at delivery and never appear in a log line or
// an error message; URLs in messages are cut to scheme://host:port, since
// many webhook URLs carry a token in their path.
//
// Thread-safety: the free functions are reentrant. An Alerter may be used
// from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"

namespace custos::scheduler {

enum class AlertKind { kJobFailed, kJobPartial, kSlotMissed, kScrubDamage, kDrillFailed, kTest };
inline constexpr int kAlertKinds = 6;

// "job-failed", "job-partial", "slot-missed", "scrub-damage", "drill-failed", "test".
const char* AlertKindName(AlertKind kind);
std::optional<AlertKind> ParseAlertKind(std::string_view name);

struct Alert {
  AlertKind kind = AlertKind::kTest;
  std::string agent;      // the agent (host) concerned; empty for appliance-wide alerts
  std::string job;        // the job ID, when there is one
  std::string time;       // RFC 3339 UTC, "2026-11-27T02:00:00Z"; empty: now, set by Post/Deliver
  std::string summary;    // one line
  std::string detail;     // plain text, several lines allowed
  std::string appliance;  // the appliance's name (AlertConfig::appliance_name)
  std::string endpoint;   // where its agents reach it
};

// Where and how alerts go. A channel is configured when its URL is set.
struct AlertConfig {
  std::string webhook_url;                   // http:// or https://
  std::string webhook_header;                // one "Name: value" header (a secret), optional
  std::string webhook_token_file;            // its first line: "Authorization: Bearer LINE", optional
  std::string smtp_url;                      // smtp://host[:port] or smtps://host[:port]
  bool smtp_starttls = false;                // smtp:// only: require STARTTLS
  std::string smtp_user;                     // optional; needs smtp_password_file and TLS
  std::string smtp_password_file;
  std::string mail_from;                     // required with smtp_url: "custos@example.org"
  std::vector<std::string> mail_to;          // at least one with smtp_url
  std::vector<AlertKind> on;                 // kinds to send; empty: all but test
  int timeout_s = 10;                        // per attempt and channel
  std::string appliance_name;                // empty: the host name

  bool webhook() const { return !webhook_url.empty(); }
  bool email() const { return !smtp_url.empty(); }
  bool any() const { return webhook() || email(); }
  // Whether alerts of `kind` are sent (a test alert always is, when asked for).
  bool Wants(AlertKind kind) const;
};

// Checks the config as custosd does at start: URL schemes, no credentials in
// URLs, mail_from and mail_to with smtp_url, smtp_user with a readable
// password file and TLS (smtps:// or STARTTLS), readable token file, header syntax, STARTTLS only with
// smtp://. InvalidArgument with a message that names the key.
Status ValidateAlertConfig(const AlertConfig& config);

// The webhook body: one JSON object (doc/formats/alerts.md). Strings that
// are not valid UTF-8 have each bad byte replaced by the text \xNN.
std::string AlertJson(const Alert& alert);

// An RFC 5322 message (CRLF line ends, lines of at most 998 octets; no
// dot-stuffing, which is the SMTP client's job): From, To, Subject (RFC 2047
// encoded when not ASCII), Date, Message-ID (random, @appliance), MIME
// headers for plain UTF-8 text, Auto-Submitted, X-Custos-Alert; the body
// lists every field and the detail.
std::string AlertEmail(const Alert& alert, const std::string& from, const std::vector<std::string>& to);

// One channel's outcome.
struct ChannelResult {
  std::string channel;  // "webhook" or "email"
  Status status;
  int tries = 0;
};

// How hard Deliver tries. Defaults: 3 tries per channel, waiting 2 s then 4 s.
struct DeliveryPolicy {
  int tries = 3;
  std::chrono::milliseconds first_backoff{2000};
  // Polled during transfers and backoff waits: when it returns true the
  // transfer is cut short and the channel fails with Cancelled (the
  // Alerter's stop deadline).
  std::function<bool()> cancelled;
};

// Sends `alert` through each configured channel (blocking: up to
// tries × timeout_s per channel plus the backoff). A non-2xx HTTP reply,
// an SMTP refusal or a transport error fails the attempt.
std::vector<ChannelResult> Deliver(const AlertConfig& config, const Alert& alert, const DeliveryPolicy& policy = {});

// A queue of alerts and one thread that delivers them in order.
class Alerter {
 public:
  // `log` gets one line per dropped alert and per channel that failed for
  // good (never a secret). `max_queue`: alerts waiting beyond it drop the
  // oldest (a storm of failures must not grow memory without bound; 64 is
  // a night's worth of alerts for a large office).
  Alerter(AlertConfig config, std::function<void(const std::string&)> log, DeliveryPolicy policy = {},
          size_t max_queue = 64);
  // Stop(10 s) if not stopped yet.
  ~Alerter();
  Alerter(const Alerter&) = delete;
  Alerter& operator=(const Alerter&) = delete;

  const AlertConfig& config() const { return config_; }
  // Queues `alert` if its kind is wanted (fills in time and appliance);
  // never blocks on the network.
  void Post(Alert alert);
  // Delivers what is queued until `deadline` passes, then gives up the rest
  // (logged) and joins the thread. Idempotent.
  void Stop(std::chrono::milliseconds deadline);
  // Alerts delivered or given up so far (tests wait on it).
  uint64_t handled() const;

 private:
  void Run();
  AlertConfig config_;
  std::function<void(const std::string&)> log_;
  DeliveryPolicy policy_;
  size_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Alert> queue_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_{};
  uint64_t handled_ = 0;
  std::thread thread_;
};

}  // namespace custos::scheduler
