// Loopback receivers for alert tests: a tiny HTTP server that records each
// request and answers with a chosen status, and a tiny SMTP server (RFC 5321
// subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no
// STARTTLS; AUTH PLAIN on request) that records each envelope and message. Each listens on 127.0.0.1
// at a free port and serves one connection at a time on its own thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace custos::alerttest {

// Accepts connections on 127.0.0.1:0 and hands each to `serve`.
class LoopbackServer {
 public:
  explicit LoopbackServer(std::function<void(int fd)> serve) : serve_(std::move(serve)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      std::abort();
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~LoopbackServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{5, 0};  // a stuck client must not hang the test
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      serve_(c);
      ::close(c);
    }
  }
  std::function<void(int)> serve_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Buffered reads from a socket.
struct Conn {
  int fd;
  std::string buf;
  bool Fill() {
    char tmp[4096];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, size_t(n));
    return true;
  }
  // Up to and without "\r\n"; false at end of stream.
  bool Line(std::string* line) {
    size_t e;
    while ((e = buf.find("\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    *line = buf.substr(0, e);
    buf.erase(0, e + 2);
    return true;
  }
  void Send(const std::string& s) { (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
};

inline std::string Lower(std::string s) {
  for (char& c : s) c = char(std::tolower(uint8_t(c)));
  return s;
}

struct HttpRequest {
  std::string method, path, body;
  std::map<std::string, std::string> headers;  // lower-case names
};

class HttpSink {
 public:
  HttpSink() : server_([this](int fd) { Serve(fd); }) {}
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + path;
  }
  void set_status(int status) { status_ = status; }
  std::vector<HttpRequest> requests() const {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  size_t count() const { return requests().size(); }

 private:
  void Serve(int fd) {
    Conn c{fd, {}};
    HttpRequest r;
    std::string line;
    if (!c.Line(&line)) return;
    size_t sp = line.find(' ');
    r.method = line.substr(0, sp);
    r.path = line.substr(sp + 1, line.rfind(' ') - sp - 1);
    while (c.Line(&line) && !line.empty()) {
      size_t colon = line.find(':');
      std::string v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(' '));
      r.headers[Lower(line.substr(0, colon))] = v;
    }
    size_t len = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    while (c.buf.size() < len && c.Fill()) {
    }
    r.body = c.buf.substr(0, len);
    {
      std::lock_guard<std::mutex> l(mu_);
      requests_.push_back(r);
    }
    int st = status_;
    c.Send("HTTP/1.1 " + std::to_string(st) + (st < 300 ? " OK" : " Oops") +
           "\r\nContent-Length: 5\r\nConnection: close\r\n\r\nsink\n");
  }
  mutable std::mutex mu_;
  std::vector<HttpRequest> requests_;
  std::atomic<int> status_{200};
  LoopbackServer server_;
};

struct Mail {
  std::string from;              // MAIL FROM:<...> without brackets
  std::vector<std::string> rcpt; // RCPT TO:<...>
  std::string data;              // the message, un-dot-stuffed, CRLF line ends
  std::vector<std::string> raw;  // the DATA lines as sent (dot-stuffed)
};

class SmtpSink {
 public:
  SmtpSink() : server_([this](int fd) { Serve(fd); }) {}
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(server_.port()); }
  // Offer AUTH PLAIN (and accept any credentials).
  void offer_auth() { auth_ = true; }
  std::vector<Mail> mails() const {
    std::lock_guard<std::mutex> l(mu_);
    return mails_;
  }
  size_t count() const { return mails().size(); }
  // Every command line received (AUTH lines too: the tests check them).
  std::vector<std::string> commands() const {
    std::lock_guard<std::mutex> l(mu_);
    return commands_;
  }

 private:
  static std::string Angle(const std::string& s) {
    size_t a = s.find('<'), b = s.rfind('>');
    return a == std::string::npos || b == std::string::npos ? s : s.substr(a + 1, b - a - 1);
  }
  void Serve(int fd) {
    Conn c{fd, {}};
    Mail m;
    c.Send("220 sink.test ESMTP\r\n");
    std::string line;
    while (c.Line(&line)) {
      {
        std::lock_guard<std::mutex> l(mu_);
        commands_.push_back(line);
      }
      std::string cmd = Lower(line.substr(0, 4));
      if (cmd == "ehlo") {
        c.Send(auth_ ? "250-sink.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n" : "250-sink.test\r\n250 8BITMIME\r\n");
      } else if (cmd == "auth") {
        if (line.find(' ', 5) == std::string::npos) {  // no initial response: ask for it
          c.Send("334 \r\n");
          if (!c.Line(&line)) return;
          std::lock_guard<std::mutex> l(mu_);
          commands_.push_back(line);
        }
        c.Send("235 ok\r\n");
      } else if (cmd == "helo" || cmd == "noop") {
        c.Send("250 ok\r\n");
      } else if (cmd == "mail") {
        m = Mail{};
        m.from = Angle(line);
        c.Send("250 ok\r\n");
      } else if (cmd == "rcpt") {
        m.rcpt.push_back(Angle(line));
        c.Send("250 ok\r\n");
      } else if (cmd == "data") {
        c.Send("354 go on\r\n");
        while (c.Line(&line) && line != ".") {
          m.raw.push_back(line);
          m.data += (line.rfind(".", 0) == 0 ? line.substr(1) : line) + "\r\n";
        }
        {
          std::lock_guard<std::mutex> l(mu_);
          mails_.push_back(m);
        }
        c.Send("250 queued\r\n");
      } else if (cmd == "rset") {
        m = Mail{};
        c.Send("250 ok\r\n");
      } else if (cmd == "quit") {
        c.Send("221 bye\r\n");
        return;
      } else {
        c.Send("502 not implemented\r\n");
      }
    }
  }
  mutable std::mutex mu_;
  std::vector<Mail> mails_;
  std::vector<std::string> commands_;
  std::atomic<bool> auth_{false};
  LoopbackServer server_;
};

// Waits until `pred` holds, up to `ms`.
template <typename F>
bool WaitUntil(F pred, int ms = 10000) {
  for (int i = 0; i < ms / 20; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace custos::alerttest
