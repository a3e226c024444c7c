#include "scheduler/alerts.h"

#include <curl/curl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <mutex>

#include "base/bytes.h"
#include "base/crypto.h"
#include "base/file_util.h"
#include "base/version.h"
#include "scheduler/calendar.h"

namespace custos::scheduler {

namespace {

constexpr const char* kKindNames[kAlertKinds] = {"job-failed",   "job-partial",  "slot-missed",
                                                 "scrub-damage", "drill-failed", "test"};

// RFC 5322 section 2.1.1: at most 998 octets per line. Longer body lines
// are broken (at a UTF-8 boundary) a little below it.
constexpr size_t kMaxLine = 990;
// A subject longer than this is cut (readers show about 80 characters).
constexpr size_t kMaxSubject = 200;
// What a webhook's reply body may hold before the rest is ignored.
constexpr size_t kMaxReply = 64 * 1024;

// The length of the UTF-8 sequence starting at s[i] if it is a valid one, else 0.
size_t Utf8Len(std::string_view s, size_t i) {
  auto c = uint8_t(s[i]);
  size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  return IsValidUtf8(s.substr(i, n)) ? n : 0;
}

// `s` with every byte that is not part of valid UTF-8 replaced by the text \xNN.
std::string CleanUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8Len(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(uint8_t(s[i])));
      out += buf;
      ++i;
    }
  }
  return out;
}

// One line of clean UTF-8 with no control bytes (a CR or LF in a name must
// not start a new header).
std::string OneLine(std::string_view s) { return EscapeForDisplay(CleanUtf8(s)); }

// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
size_t Utf8Cut(std::string_view s, size_t max) {
  if (s.size() <= max) return s.size();
  size_t i = max;
  while (i > 0 && (uint8_t(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return uint8_t(c) < 0x80; });
}

// RFC 2047 encoded words ("=?UTF-8?B?...?=", at most 75 characters each,
// whole characters in each), folded with CRLF SP.
std::string EncodeHeaderWords(std::string_view s) {
  constexpr size_t kChunk = 45;  // 45 bytes -> 60 base64 characters + 12 of framing = 72 <= 75
  std::string out;
  while (!s.empty()) {
    size_t n = Utf8Cut(s, kChunk);
    if (n == 0) n = std::min(s.size(), kChunk);
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + Base64Encode(ByteView(reinterpret_cast<const uint8_t*>(s.data()), n)) + "?=";
    s.remove_prefix(n);
  }
  return out;
}

// "Thu, 27 Nov 2026 02:00:00 +0000" (RFC 5322 section 3.3) from RFC 3339 UTC.
std::string MailDate(const std::string& rfc3339) {
  tm t{};
  if (!strptime(rfc3339.c_str(), "%Y-%m-%dT%H:%M:%S", &t)) {
    time_t now = ::time(nullptr);
    gmtime_r(&now, &t);
  }
  time_t secs = timegm(&t);
  gmtime_r(&secs, &t);  // fills in the weekday
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[t.tm_wday], t.tm_mday,
                kMonths[t.tm_mon], t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec);
  return buf;
}

// A domain for Message-ID: the appliance name if it is a plain host name.
std::string IdDomain(const std::string& name) {
  bool plain = !name.empty() && name.size() <= 253 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(uint8_t(c)) || c == '-' || c == '.';
  });
  return plain ? name : "custos.invalid";
}

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "custos";
  return buf;
}

void FillIn(Alert& a, const AlertConfig& c) {
  if (a.time.empty()) a.time = FormatUtc(Now());
  if (a.appliance.empty()) a.appliance = c.appliance_name.empty() ? HostName() : c.appliance_name;
}

// scheme://host[:port] of a URL: what messages may show (paths of webhook
// URLs often carry a token; user info is refused by validation anyway).
std::string Origin(const std::string& url) {
  size_t s = url.find("://");
  if (s == std::string::npos) return "(url)";
  size_t end = url.find_first_of("/?#", s + 3);
  std::string auth = url.substr(s + 3, end == std::string::npos ? std::string::npos : end - s - 3);
  if (size_t at = auth.rfind('@'); at != std::string::npos) auth = auth.substr(at + 1);
  return url.substr(0, s + 3) + auth;
}

std::string Scheme(const std::string& url) {
  size_t s = url.find("://");
  if (s == std::string::npos) return "";
  std::string scheme = url.substr(0, s);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](char c) { return char(std::tolower(uint8_t(c))); });
  return scheme;
}

bool HasUserInfo(const std::string& url) {
  size_t s = url.find("://");
  if (s == std::string::npos) return false;
  size_t end = url.find_first_of("/?#", s + 3);
  return url.substr(s + 3, end == std::string::npos ? std::string::npos : end - s - 3).find('@') != std::string::npos;
}

bool HasHost(const std::string& url) {
  size_t s = url.find("://");
  return s != std::string::npos && s + 3 < url.size() && url[s + 3] != '/' && url[s + 3] != ':';
}

bool PlainAddress(const std::string& a) {
  return a.find('@') != std::string::npos && a.front() != '@' && a.back() != '@' &&
         std::none_of(a.begin(), a.end(), [](char c) { return uint8_t(c) <= ' ' || c == '<' || c == '>' || c == ','; });
}

// The first line of a secret file (no line end). The caller wipes it.
Result<std::string> ReadSecretLine(const std::string& path, const std::string& what) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status().Annotate(what);
  std::string s(bytes->begin(), bytes->end());
  SecureWipe(bytes->data(), bytes->size());
  size_t nl = s.find_first_of("\r\n");
  if (nl != std::string::npos) {
    SecureWipe(s.data() + nl, s.size() - nl);
    s.resize(nl);
  }
  if (s.empty()) return InvalidArgumentError(what + " " + path + " is empty");
  return s;
}

bool ValidHeader(const std::string& h) {
  size_t colon = h.find(':');
  if (colon == std::string::npos || colon == 0) return false;
  for (size_t i = 0; i < colon; ++i) {
    char c = h[i];
    if (!(std::isalnum(uint8_t(c)) || c == '-' || c == '_')) return false;
  }
  return std::none_of(h.begin(), h.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

void CurlInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// One easy handle with the settings both channels share.
struct Easy {
  CURL* h = nullptr;
  curl_slist* headers = nullptr;
  curl_slist* rcpt = nullptr;
  char err[CURL_ERROR_SIZE] = {};
  const DeliveryPolicy* policy = nullptr;
  Easy(const AlertConfig& c, const DeliveryPolicy& p, const char* protocols) : policy(&p) {
    CurlInitOnce();
    h = curl_easy_init();
    if (!h) return;
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
    curl_easy_setopt(h, CURLOPT_TIMEOUT, long(c.timeout_s));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, long(c.timeout_s));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Easy::Progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, this);
  }
  ~Easy() {
    if (headers) curl_slist_free_all(headers);
    if (rcpt) curl_slist_free_all(rcpt);
    if (h) curl_easy_cleanup(h);
  }
  static int Progress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* e = static_cast<Easy*>(self);
    return e->policy->cancelled && e->policy->cancelled() ? 1 : 0;
  }
  // The transfer's error as a Status naming `what` (no secret: curl's
  // messages name hosts and ports, never credentials or paths).
  Status Perform(const std::string& what) {
    if (!h) return IOError(what + ": curl_easy_init failed");
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) return Status::Ok();
    std::string msg = what + ": " + curl_easy_strerror(rc) + (err[0] ? std::string(" (") + err + ")" : "");
    if (rc == CURLE_ABORTED_BY_CALLBACK) return CancelledError(what + ": stopped before it was delivered");
    return UnavailableError(msg);
  }
};

size_t DiscardReply(char* data, size_t size, size_t n, void* user) {
  auto* got = static_cast<std::string*>(user);
  size_t len = size * n;
  if (got->size() < kMaxReply) got->append(data, std::min(len, kMaxReply - got->size()));
  return len;
}

Status SendWebhook(const AlertConfig& c, const Alert& a, const DeliveryPolicy& p) {
  std::string what = "webhook " + Origin(c.webhook_url);
  std::string body = AlertJson(a);
  Easy e(c, p, "http,https");
  std::string reply;
  e.headers = curl_slist_append(e.headers, "Content-Type: application/json");
  e.headers = curl_slist_append(e.headers, (std::string("User-Agent: custosd/") + kCustosVersion).c_str());
  e.headers = curl_slist_append(e.headers, "Expect:");  // no 100-continue round trip
  if (!c.webhook_header.empty()) e.headers = curl_slist_append(e.headers, c.webhook_header.c_str());
  if (!c.webhook_token_file.empty()) {
    auto token = ReadSecretLine(c.webhook_token_file, "webhook_token_file");
    if (!token.ok()) return token.status().Annotate(what);
    std::string h = "Authorization: Bearer " + *token;
    e.headers = curl_slist_append(e.headers, h.c_str());  // libcurl copies it
    SecureWipe(h.data(), h.size());
    SecureWipe(token->data(), token->size());
  }
  curl_easy_setopt(e.h, CURLOPT_URL, c.webhook_url.c_str());
  curl_easy_setopt(e.h, CURLOPT_HTTPHEADER, e.headers);
  curl_easy_setopt(e.h, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(e.h, CURLOPT_POSTFIELDSIZE, long(body.size()));
  curl_easy_setopt(e.h, CURLOPT_WRITEFUNCTION, &DiscardReply);
  curl_easy_setopt(e.h, CURLOPT_WRITEDATA, &reply);
  RETURN_IF_ERROR(e.Perform(what));
  long code = 0;
  curl_easy_getinfo(e.h, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code > 299) {
    std::string first = OneLine(reply.substr(0, std::min<size_t>(reply.find('\n'), 120)));
    return UnavailableError(what + ": HTTP " + std::to_string(code) + (first.empty() ? "" : " (" + first + ")"));
  }
  return Status::Ok();
}

struct Upload {
  const std::string* data;
  size_t pos = 0;
};

size_t ReadUpload(char* out, size_t size, size_t n, void* user) {
  auto* u = static_cast<Upload*>(user);
  size_t len = std::min(size * n, u->data->size() - u->pos);
  std::memcpy(out, u->data->data() + u->pos, len);
  u->pos += len;
  return len;
}

Status SendEmail(const AlertConfig& c, const Alert& a, const DeliveryPolicy& p) {
  std::string what = "smtp " + Origin(c.smtp_url);
  std::string message = AlertEmail(a, c.mail_from, c.mail_to);
  Easy e(c, p, "smtp,smtps");
  std::string password;
  if (!c.smtp_user.empty()) {
    auto pw = ReadSecretLine(c.smtp_password_file, "smtp_password_file");
    if (!pw.ok()) return pw.status().Annotate(what);
    password = std::move(pw).value();
    curl_easy_setopt(e.h, CURLOPT_USERNAME, c.smtp_user.c_str());
    curl_easy_setopt(e.h, CURLOPT_PASSWORD, password.c_str());  // libcurl copies it
    SecureWipe(password.data(), password.size());
  }
  std::string from = "<" + c.mail_from + ">";
  for (const auto& to : c.mail_to) e.rcpt = curl_slist_append(e.rcpt, ("<" + to + ">").c_str());
  curl_easy_setopt(e.h, CURLOPT_URL, c.smtp_url.c_str());
  // smtps:// is TLS from the first byte; smtp:// with smtp_starttls refuses
  // a server that does not offer STARTTLS rather than send in the clear.
  if (c.smtp_starttls || Scheme(c.smtp_url) == "smtps") curl_easy_setopt(e.h, CURLOPT_USE_SSL, long(CURLUSESSL_ALL));
  curl_easy_setopt(e.h, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(e.h, CURLOPT_MAIL_RCPT, e.rcpt);
  Upload up{&message};
  curl_easy_setopt(e.h, CURLOPT_READFUNCTION, &ReadUpload);
  curl_easy_setopt(e.h, CURLOPT_READDATA, &up);
  curl_easy_setopt(e.h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e.h, CURLOPT_INFILESIZE_LARGE, curl_off_t(message.size()));
  return e.Perform(what);
}

// Sleeps `d` in short steps; false if cancelled meanwhile.
bool Backoff(std::chrono::milliseconds d, const DeliveryPolicy& p) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (p.cancelled && p.cancelled()) return false;
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(100), std::chrono::duration_cast<std::chrono::milliseconds>(
                                            until - std::chrono::steady_clock::now() + std::chrono::milliseconds(1))));
  }
  return true;
}

ChannelResult Try(const char* channel, const DeliveryPolicy& p, const std::function<Status()>& send) {
  ChannelResult r{channel, Status::Ok(), 0};
  auto wait = p.first_backoff;
  for (;;) {
    ++r.tries;
    r.status = send();
    if (r.status.ok() || r.status.code() == Code::kCancelled || r.tries >= std::max(p.tries, 1)) return r;
    if (!Backoff(wait, p)) return r;
    wait *= 2;
  }
}

}  // namespace

const char* AlertKindName(AlertKind kind) { return kKindNames[int(kind)]; }

std::optional<AlertKind> ParseAlertKind(std::string_view name) {
  for (int i = 0; i < kAlertKinds; ++i) {
    if (name == kKindNames[i]) return AlertKind(i);
  }
  return std::nullopt;
}

bool AlertConfig::Wants(AlertKind kind) const {
  if (kind == AlertKind::kTest) return true;
  return on.empty() || std::find(on.begin(), on.end(), kind) != on.end();
}

Status ValidateAlertConfig(const AlertConfig& c) {
  auto bad = [](const std::string& m) { return InvalidArgumentError("[alerts] " + m); };
  if (c.webhook()) {
    std::string s = Scheme(c.webhook_url);
    if (s != "http" && s != "https") return bad("webhook_url must start with http:// or https://");
    if (!HasHost(c.webhook_url)) return bad("webhook_url has no host");
    if (HasUserInfo(c.webhook_url)) return bad("webhook_url must not hold credentials: use webhook_header or webhook_token_file");
  } else if (!c.webhook_header.empty() || !c.webhook_token_file.empty()) {
    return bad("webhook_header and webhook_token_file need webhook_url");
  }
  if (!c.webhook_header.empty() && !ValidHeader(c.webhook_header)) {
    return bad("webhook_header must be one 'Name: value' header");  // not the value: it is a secret
  }
  if (!c.webhook_token_file.empty()) {
    auto t = ReadSecretLine(c.webhook_token_file, "webhook_token_file");
    if (!t.ok()) return bad(t.status().message());
    SecureWipe(t->data(), t->size());
  }
  if (c.email()) {
    std::string s = Scheme(c.smtp_url);
    if (s != "smtp" && s != "smtps") return bad("smtp_url must start with smtp:// or smtps://");
    if (!HasHost(c.smtp_url)) return bad("smtp_url has no host");
    if (HasUserInfo(c.smtp_url)) return bad("smtp_url must not hold credentials: use smtp_user and smtp_password_file");
    if (c.smtp_starttls && s == "smtps") return bad("smtp_starttls is for smtp:// (smtps:// is TLS already)");
    if (c.mail_from.empty()) return bad("smtp_url needs mail_from");
    if (!PlainAddress(c.mail_from)) return bad("mail_from is not a plain address (name@domain)");
    if (c.mail_to.empty()) return bad("smtp_url needs mail_to (one address or more)");
    for (const auto& to : c.mail_to) {
      if (!PlainAddress(to)) return bad("mail_to: '" + OneLine(to) + "' is not a plain address (name@domain)");
    }
    if (!c.smtp_user.empty()) {
      if (c.smtp_password_file.empty()) return bad("smtp_user needs smtp_password_file");
      if (s != "smtps" && !c.smtp_starttls) return bad("smtp_user needs smtps:// or smtp_starttls = true (no password in the clear)");
      auto pw = ReadSecretLine(c.smtp_password_file, "smtp_password_file");
      if (!pw.ok()) return bad(pw.status().message());
      SecureWipe(pw->data(), pw->size());
    } else if (!c.smtp_password_file.empty()) {
      return bad("smtp_password_file needs smtp_user");
    }
  } else if (c.smtp_starttls || !c.smtp_user.empty() || !c.smtp_password_file.empty() || !c.mail_from.empty() ||
             !c.mail_to.empty()) {
    return bad("smtp_starttls, smtp_user, smtp_password_file, mail_from and mail_to need smtp_url");
  }
  if (c.timeout_s < 1 || c.timeout_s > 300) return bad("timeout_s must be 1..300");
  return Status::Ok();
}

std::string AlertJson(const Alert& a) {
  nlohmann::json j = {{"type", "custos.alert"},
                      {"version", 1},
                      {"kind", AlertKindName(a.kind)},
                      {"time", CleanUtf8(a.time)},
                      {"agent", CleanUtf8(a.agent)},
                      {"job", CleanUtf8(a.job)},
                      {"summary", CleanUtf8(a.summary)},
                      {"detail", CleanUtf8(a.detail)},
                      {"appliance", {{"name", CleanUtf8(a.appliance)}, {"endpoint", CleanUtf8(a.endpoint)}}}};
  return j.dump();
}

std::string AlertEmail(const Alert& a, const std::string& from, const std::vector<std::string>& to) {
  std::string subject = OneLine("[custos] " + std::string(AlertKindName(a.kind)) + ": " + a.summary);
  if (subject.size() > kMaxSubject) subject = subject.substr(0, Utf8Cut(subject, kMaxSubject - 3)) + "...";
  std::string to_line;
  for (const auto& t : to) to_line += (to_line.empty() ? "" : ", ") + OneLine(t);
  uint8_t rnd[12];
  RandomBytes(rnd, sizeof rnd);
  std::string m;
  m += "From: custosd <" + OneLine(from) + ">\r\n";
  m += "To: " + to_line + "\r\n";
  m += "Subject: " + (IsAscii(subject) ? subject : EncodeHeaderWords(subject)) + "\r\n";
  m += "Date: " + MailDate(a.time) + "\r\n";
  m += "Message-ID: <" + ToHex(ByteView(rnd, sizeof rnd)) + "@" + IdDomain(a.appliance) + ">\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\n";
  m += "Content-Transfer-Encoding: 8bit\r\n";
  m += "Auto-Submitted: auto-generated\r\n";  // RFC 3834: no auto-replies to this
  m += std::string("X-Custos-Alert: ") + AlertKindName(a.kind) + "\r\n";
  m += "\r\n";
  std::string body = a.summary + "\n\n";
  body += std::string("Kind:      ") + AlertKindName(a.kind) + "\n";
  if (!a.agent.empty()) body += "Agent:     " + a.agent + "\n";
  if (!a.job.empty()) body += "Job:       " + a.job + "\n";
  body += "Time:      " + a.time + "\n";
  body += "Appliance: " + a.appliance + (a.endpoint.empty() ? "" : " (" + a.endpoint + ")") + "\n";
  if (!a.detail.empty()) body += "\n" + a.detail + "\n";
  body += "\n-- \ncustosd " + std::string(kCustosVersion) + "\n";
  // Each line: clean UTF-8, no control bytes but tabs, at most kMaxLine octets.
  size_t start = 0;
  while (start < body.size()) {
    size_t nl = body.find('\n', start);
    std::string line = body.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? body.size() : nl + 1;
    std::string clean = CleanUtf8(line);
    for (size_t t; (t = clean.find('\t')) != std::string::npos;) clean.replace(t, 1, "    ");
    clean = EscapeForDisplay(clean);
    std::string_view rest = clean;
    do {
      size_t n = Utf8Cut(rest, kMaxLine);
      m.append(rest.substr(0, n));
      m += "\r\n";
      rest.remove_prefix(n);
    } while (!rest.empty());
  }
  return m;
}

std::vector<ChannelResult> Deliver(const AlertConfig& config, const Alert& alert, const DeliveryPolicy& policy) {
  Alert a = alert;
  FillIn(a, config);
  std::vector<ChannelResult> out;
  if (config.webhook()) out.push_back(Try("webhook", policy, [&] { return SendWebhook(config, a, policy); }));
  if (config.email()) out.push_back(Try("email", policy, [&] { return SendEmail(config, a, policy); }));
  return out;
}

Alerter::Alerter(AlertConfig config, std::function<void(const std::string&)> log, DeliveryPolicy policy,
                 size_t max_queue)
    : config_(std::move(config)), log_(std::move(log)), policy_(std::move(policy)), max_queue_(std::max<size_t>(max_queue, 1)) {
  policy_.cancelled = [this] {
    std::lock_guard<std::mutex> l(mu_);
    return stopping_ && std::chrono::steady_clock::now() >= deadline_;
  };
  thread_ = std::thread([this] { Run(); });
}

Alerter::~Alerter() { Stop(std::chrono::seconds(10)); }

void Alerter::Post(Alert alert) {
  if (!config_.any() || !config_.Wants(alert.kind)) return;
  FillIn(alert, config_);
  std::string dropped;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    if (queue_.size() >= max_queue_) {
      const Alert& old = queue_.front();
      dropped = std::string("alert queue full (") + std::to_string(max_queue_) + "): dropped the oldest, " +
                AlertKindName(old.kind) + " of " + old.time + (old.job.empty() ? "" : " (job " + old.job + ")");
      queue_.pop_front();
      ++handled_;
    }
    queue_.push_back(std::move(alert));
  }
  cv_.notify_all();
  if (!dropped.empty() && log_) log_(dropped);
}

void Alerter::Stop(std::chrono::milliseconds deadline) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!thread_.joinable()) return;
    if (!stopping_) {
      stopping_ = true;
      deadline_ = std::chrono::steady_clock::now() + deadline;
    }
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t Alerter::handled() const {
  std::lock_guard<std::mutex> l(mu_);
  return handled_;
}

void Alerter::Run() {
  for (;;) {
    Alert a;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, all delivered
      if (stopping_ && std::chrono::steady_clock::now() >= deadline_) {
        size_t n = queue_.size();
        handled_ += n;
        queue_.clear();
        l.unlock();
        if (log_) log_("stopping: " + std::to_string(n) + " alert(s) not delivered before the deadline");
        return;
      }
      a = std::move(queue_.front());
      queue_.pop_front();
    }
    for (const auto& r : Deliver(config_, a, policy_)) {
      if (!r.status.ok() && log_) {
        log_(std::string("alert ") + AlertKindName(a.kind) + (a.job.empty() ? "" : " (job " + a.job + ")") +
             " not delivered by " + r.channel + " after " + std::to_string(r.tries) + " tries: " + r.status.message());
      }
    }
    std::lock_guard<std::mutex> l(mu_);
    ++handled_;
  }
}

}  // namespace custos::scheduler
