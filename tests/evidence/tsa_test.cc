// RFC 3161 timestamps of checkpoints (evidence/timestamp.h) against a local
// authority: a throwaway CA and TSA certificate made with openssl, and a
// small python3 http.server on 127.0.0.1 that answers each query with
// `openssl ts -reply`. Tokens are checked by openssl ts -verify, by the
// bundle's VERIFY.sh and by the verifier; an unreachable authority leaves
// the checkpoint signed and says why it has no token.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "evidence/timestamp.h"
#include "evidence/verify.h"
#include "tests/evidence/evidence_fixture.h"

using namespace custos;
using namespace custos::evidence;
using namespace custos::evidencetest;

namespace {

constexpr const char* kServer = R"PY(
import http.server, os, subprocess, sys
d = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        q, r = os.path.join(d, "q.der"), os.path.join(d, "r.der")
        with open(q, "wb") as f:
            f.write(body)
        rc = subprocess.call(["openssl", "ts", "-reply", "-config", os.path.join(d, "tsa.cnf"),
                              "-queryfile", q, "-out", r], stderr=subprocess.DEVNULL)
        if rc != 0 or self.headers.get("Content-Type") != "application/timestamp-query":
            self.send_response(400)
            self.end_headers()
            return
        data = open(r, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(d, "port.tmp"), "w") as f:
    f.write(str(server.server_port))
os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
server.serve_forever()
)PY";

// A local time-stamping authority; stops its server when destroyed.
class LocalTsa {
 public:
  explicit LocalTsa(const std::string& dir) : dir_(dir) {
    Spit(dir + "/ext.cnf",
         "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n");
    Spit(dir + "/tsa.cnf", "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = " + dir +
                               "\nserial = $dir/serial\ncrypto_device = builtin\nsigner_cert = $dir/tsa.pem\n"
                               "certs = $dir/ca.pem\nsigner_key = $dir/tsa.key\nsigner_digest = sha256\n"
                               "default_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\naccuracy = secs:1\n"
                               "ordering = yes\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n");
    Spit(dir + "/serial", "01\n");
    Spit(dir + "/server.py", kServer);
    auto r = test::Run("cd " + dir + " && "
                       "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
                       "-days 30 -subj '/CN=Custos Test TSA CA' -addext basicConstraints=critical,CA:TRUE "
                       "-addext keyUsage=critical,keyCertSign,cRLSign && "
                       "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tsa.key -out tsa.csr "
                       "-subj '/CN=Custos Test TSA' && "
                       "openssl x509 -req -in tsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out tsa.pem -days 30 "
                       "-extfile ext.cnf");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto start = test::Run("cd " + dir + " && (/usr/bin/python3 server.py " + dir + " >/dev/null 2>&1 & echo $! > pid)");
    REQUIRE(start.exit_code == 0);
    for (int i = 0; i < 200 && ::access((dir + "/port").c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));  // waiting for a real process to bind
    }
    REQUIRE(::access((dir + "/port").c_str(), F_OK) == 0);
    url_ = "http://127.0.0.1:" + Slurp(dir + "/port") + "/tsa";
  }
  ~LocalTsa() {
    pid_t pid = pid_t(std::atoi(Slurp(dir_ + "/pid").c_str()));
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  const std::string& url() const { return url_; }
  std::string ca() const { return dir_ + "/ca.pem"; }

 private:
  std::string dir_, url_;
};

bool OpensslHasTs() { return test::Run("openssl ts -help").exit_code == 0 || test::Run("openssl list -commands | grep -qw ts").exit_code == 0; }

}  // namespace

TEST_CASE("checkpoints get RFC 3161 timestamps that openssl ts -verify accepts", "[evidence][tsa]") {
  if (!OpensslHasTs()) {
    WARN("openssl has no ts command: skipped");
    return;
  }
  test::TempDir dir;
  LocalTsa tsa(dir.path());
  std::string data = "custos.evidence/2026-0001\n1\nAAAA\nt\n";
  auto resp = RequestTimestamp(tsa.url(), AsBytes(data));
  INFO(resp.status().ToString());
  REQUIRE(resp.ok());
  auto info = CheckTimestamp(*resp, AsBytes(data), Slurp(tsa.ca()));
  INFO(info.status().ToString());
  REQUIRE(info.ok());
  CHECK(info->time.substr(0, 2) == "20");
  CHECK(CheckTimestamp(*resp, AsBytes(data + "x"), Slurp(tsa.ca())).status().code() == Code::kIntegrity);
  CHECK(CheckTimestamp(*resp, AsBytes(data), PublicKeyPem(TestKey().public_key)).status().code() != Code::kOk);

  StoreOptions o;
  o.tsa_url = tsa.url();
  o.tsa_ca_file = tsa.ca();
  auto s = OpenStore(dir.path() + "/ev", TestKey(), o);
  auto c = s->OpenCase("timestamped", "", "", Operator());
  REQUIRE(c.ok());
  REQUIRE(c->last_checkpoint);
  CHECK(c->last_checkpoint->timestamped);
  FillCase(*s, c->id, dir.path());
  std::string folder = ExportAndExtract(*s, c->id, dir.path());
  auto v = test::Run("cd " + folder + " && for t in checkpoints/*.txt; do openssl ts -verify -data $t -in ${t%.txt}.tsr "
                                     "-CAfile tsa-ca.pem || exit 1; done");
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
  CHECK_THAT(v.out, Catch::Contains("Verification: OK"));
  auto sh = test::Run("cd " + folder + " && sh VERIFY.sh");
  INFO(sh.out << sh.err);
  CHECK(sh.exit_code == 0);
  auto cli = VerifyCli(dir.path() + "/bundle.tar", "--json");
  INFO(cli.out);
  CHECK(cli.exit_code == 0);
  CHECK(json::parse(cli.out)["timestamps"] == 5);

  // A token moved to another checkpoint stamps other bytes.
  test::Run("cd " + folder + " && cp checkpoints/00000001.tsr checkpoints/00000010.tsr");
  auto moved = VerifyBundleFile(Repack(folder, dir.path() + "/moved.tar"), VerifyOptions{});
  REQUIRE(moved.ok());
  bool named = false;
  for (const auto& p : moved->problems) named |= p.find("checkpoints/00000010.tsr: timestamp: token does not verify") != std::string::npos;
  CHECK(named);
  auto sh2 = test::Run("cd " + folder + " && sh VERIFY.sh");
  CHECK(sh2.exit_code != 0);
  CHECK_THAT(sh2.out, Catch::Contains("checkpoints/00000010.tsr: the RFC 3161 timestamp does not verify"));
}

TEST_CASE("an unreachable time-stamping authority does not stop a case", "[evidence][tsa]") {
  test::TempDir dir;
  StoreOptions o;
  o.tsa_url = "http://127.0.0.1:9/";  // discard port: nothing listens
  o.tsa_timeout_s = 5;
  auto s = OpenStore(dir.path() + "/ev", TestKey(), o);
  auto c = s->OpenCase("no tsa", "", "", Operator());
  REQUIRE(c.ok());
  REQUIRE(c->last_checkpoint);
  CHECK_FALSE(c->last_checkpoint->timestamped);
  auto lines = Lines(Slurp(s->CaseDir(c->id) + "/ledger.jsonl"));
  CHECK_THAT(lines[1], Catch::Contains("\"tsr_error\":\"timestamp: "));
  CHECK(s->Export(c->id, dir.path() + "/b.tar", Operator()).ok());
  CHECK(VerifyCli(dir.path() + "/b.tar").exit_code == 0);
}
