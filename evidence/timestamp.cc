#include "evidence/timestamp.h"

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ts.h>
#include <openssl/x509.h>

#include <memory>
#include <mutex>

#include "base/crypto.h"

namespace custos::evidence {

namespace {

// A reply larger than this is not a timestamp (tokens are a few KiB).
constexpr size_t kMaxReply = 1 << 20;

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using ReqPtr = std::unique_ptr<TS_REQ, Deleter<TS_REQ, TS_REQ_free>>;
using RespPtr = std::unique_ptr<TS_RESP, Deleter<TS_RESP, TS_RESP_free>>;
using CtxPtr = std::unique_ptr<TS_VERIFY_CTX, Deleter<TS_VERIFY_CTX, TS_VERIFY_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

std::string OpensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Result<RespPtr> ParseResponse(ByteView der) {
  const unsigned char* p = der.data();
  RespPtr resp(d2i_TS_RESP(nullptr, &p, long(der.size())));
  if (!resp || p != der.data() + der.size()) {
    ERR_clear_error();
    return CorruptionError("timestamp: not a DER TimeStampResp");
  }
  return resp;
}

// "20261127120000Z" -> "2026-11-27T12:00:00Z" (fraction kept).
std::string GeneralizedTime(const ASN1_GENERALIZEDTIME* t) {
  if (!t) return "";
  std::string s(reinterpret_cast<const char*>(ASN1_STRING_get0_data(t)), size_t(ASN1_STRING_length(t)));
  if (s.size() < 15) return s;
  return s.substr(0, 4) + "-" + s.substr(4, 2) + "-" + s.substr(6, 2) + "T" + s.substr(8, 2) + ":" + s.substr(10, 2) +
         ":" + s.substr(12);
}

TimestampInfo InfoOf(TS_RESP* resp) {
  TimestampInfo info;
  TS_TST_INFO* tst = TS_RESP_get_tst_info(resp);
  if (!tst) return info;
  info.time = GeneralizedTime(TS_TST_INFO_get_time(tst));
  if (const ASN1_INTEGER* serial = TS_TST_INFO_get_serial(tst)) {
    BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
    if (bn) {
      char* hex = BN_bn2hex(bn);
      if (hex) info.serial_hex = hex;
      OPENSSL_free(hex);
      BN_free(bn);
    }
  }
  if (GENERAL_NAME* tsa = TS_TST_INFO_get_tsa(tst)) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (bio && GENERAL_NAME_print(bio.get(), tsa) > 0) {
      char* data = nullptr;
      long n = BIO_get_mem_data(bio.get(), &data);
      if (n > 0) info.tsa_name.assign(data, size_t(n));
    }
  }
  return info;
}

// Status granted (0) or grantedWithMods (1), with the failure text otherwise.
Status CheckGranted(TS_RESP* resp) {
  TS_STATUS_INFO* si = TS_RESP_get_status_info(resp);
  const ASN1_INTEGER* status = si ? TS_STATUS_INFO_get0_status(si) : nullptr;
  long v = status ? ASN1_INTEGER_get(status) : -1;
  if (v == 0 || v == 1) {
    if (!TS_RESP_get_token(resp)) return IntegrityError("timestamp: granted but carries no token");
    return Status::Ok();
  }
  return IntegrityError("timestamp: the authority did not grant it (PKIStatus " + std::to_string(v) + ")");
}

size_t CollectReply(char* data, size_t size, size_t n, void* user) {
  auto* out = static_cast<Bytes*>(user);
  size_t len = size * n;
  if (out->size() + len > kMaxReply) return 0;  // aborts the transfer
  out->insert(out->end(), data, data + len);
  return len;
}

Result<Bytes> Post(const std::string& url, const Bytes& body, int timeout_s) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* h = curl_easy_init();
  if (!h) return IOError("timestamp: curl_easy_init failed");
  std::unique_ptr<CURL, void (*)(CURL*)> guard(h, curl_easy_cleanup);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/timestamp-query");
  headers = curl_slist_append(headers, "Expect:");
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> hguard(headers, curl_slist_free_all);
  char err[CURL_ERROR_SIZE] = {0};
  Bytes reply;
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, long(timeout_s));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, long(timeout_s));
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, long(body.size()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &CollectReply);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    return UnavailableError("timestamp: " + std::string(curl_easy_strerror(rc)) + (err[0] ? std::string(" (") + err + ")" : ""));
  }
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) return UnavailableError("timestamp: the authority answered HTTP " + std::to_string(code));
  return reply;
}

}  // namespace

Result<Bytes> RequestTimestamp(const std::string& url, ByteView data, int timeout_s) {
  Id digest = Sha256(data);
  ReqPtr req(TS_REQ_new());
  if (!req) return IOError("timestamp: out of memory");
  TS_MSG_IMPRINT* mi = TS_MSG_IMPRINT_new();
  X509_ALGOR* alg = X509_ALGOR_new();
  bool ok = mi && alg && X509_ALGOR_set0(alg, OBJ_nid2obj(NID_sha256), V_ASN1_NULL, nullptr) &&
            TS_MSG_IMPRINT_set_algo(mi, alg) &&
            TS_MSG_IMPRINT_set_msg(mi, const_cast<unsigned char*>(digest.bytes.data()), int(digest.bytes.size())) &&
            TS_REQ_set_version(req.get(), 1) && TS_REQ_set_msg_imprint(req.get(), mi) &&
            TS_REQ_set_cert_req(req.get(), 1);
  X509_ALGOR_free(alg);     // the setters copy
  TS_MSG_IMPRINT_free(mi);
  if (!ok) return IOError("timestamp: building the request: " + OpensslError());
  uint8_t nonce_bytes[8];
  RandomBytes(nonce_bytes, sizeof nonce_bytes);
  nonce_bytes[0] &= 0x7f;  // positive, as `openssl ts -query` makes them
  BIGNUM* bn = BN_bin2bn(nonce_bytes, sizeof nonce_bytes, nullptr);
  ASN1_INTEGER* nonce = bn ? BN_to_ASN1_INTEGER(bn, nullptr) : nullptr;
  BN_free(bn);
  ok = nonce && TS_REQ_set_nonce(req.get(), nonce);
  ASN1_INTEGER_free(nonce);
  if (!ok) return IOError("timestamp: building the nonce: " + OpensslError());
  unsigned char* der = nullptr;
  int len = i2d_TS_REQ(req.get(), &der);
  if (len <= 0) return IOError("timestamp: encoding the request: " + OpensslError());
  Bytes body(der, der + len);
  OPENSSL_free(der);

  ASSIGN_OR_RETURN(Bytes reply, Post(url, body, timeout_s));
  ASSIGN_OR_RETURN(RespPtr resp, ParseResponse(reply));
  RETURN_IF_ERROR(CheckGranted(resp.get()));
  // Version, imprint and nonce as asked (the request's own fields); the
  // signature is checked where the CA is known (CheckTimestamp).
  CtxPtr ctx(TS_REQ_to_TS_VERIFY_CTX(req.get(), nullptr));
  if (!ctx) return IOError("timestamp: " + OpensslError());
  TS_VERIFY_CTX_set_flags(ctx.get(), TS_VFY_VERSION | TS_VFY_IMPRINT | TS_VFY_NONCE);
  if (TS_RESP_verify_response(ctx.get(), resp.get()) != 1) {
    return IntegrityError("timestamp: the reply does not stamp this request (" + OpensslError() + ")");
  }
  return reply;
}

Result<TimestampInfo> CheckTimestamp(ByteView response_der, ByteView data, std::string_view ca_pem) {
  ASSIGN_OR_RETURN(RespPtr resp, ParseResponse(response_der));
  RETURN_IF_ERROR(CheckGranted(resp.get()));
  CtxPtr ctx(TS_VERIFY_CTX_new());
  if (!ctx) return IOError("timestamp: out of memory");
  int flags = TS_VFY_VERSION | TS_VFY_DATA;
  BIO* bio = BIO_new_mem_buf(data.data(), int(data.size()));
  if (!bio) return IOError("timestamp: out of memory");
  TS_VERIFY_CTX_set_data(ctx.get(), bio);  // owned by ctx
  if (!ca_pem.empty()) {
    X509_STORE* store = X509_STORE_new();
    if (!store) return IOError("timestamp: out of memory");
    TS_VERIFY_CTX_set_store(ctx.get(), store);  // owned by ctx
    BioPtr in(BIO_new_mem_buf(ca_pem.data(), int(ca_pem.size())));
    int added = 0;
    while (X509* cert = in ? PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr) : nullptr) {
      if (X509_STORE_add_cert(store, cert) == 1) ++added;
      X509_free(cert);
    }
    ERR_clear_error();  // the end of the PEM stream
    if (added == 0) return CorruptionError("timestamp: tsa-ca.pem holds no certificate");
    flags |= TS_VFY_SIGNATURE;
  }
  TS_VERIFY_CTX_set_flags(ctx.get(), flags);
  if (TS_RESP_verify_response(ctx.get(), resp.get()) != 1) {
    return IntegrityError("timestamp: token does not verify for this checkpoint (" + OpensslError() + ")");
  }
  return InfoOf(resp.get());
}

}  // namespace custos::evidence
