// RFC 3161 trusted timestamps for checkpoints: a TimeStampReq over the
// SHA-256 of the checkpoint text (certReq true, a random 64-bit nonce), sent
// by HTTP POST (Content-Type application/timestamp-query) with libcurl; the
// TimeStampResp is checked (status granted, same message imprint and nonce)
// and stored whole as X.tsr, the form `openssl ts -verify -data X.txt -in
// X.tsr -CAfile tsa-ca.pem` reads.
//
// OpenSSL's TS API and libcurl stay in timestamp.cc.
// Thread-safety: functions are reentrant (curl_global_init once, guarded).
#pragma once

#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace custos::evidence {

struct TimestampInfo {
  std::string time;        // genTime, "YYYY-MM-DDTHH:MM:SSZ" (fraction kept if present)
  std::string tsa_name;    // the TSA's name from the token, if present
  std::string serial_hex;  // the token's serial number
};

// Asks the authority at `url` for a timestamp of `data`; returns the DER
// TimeStampResp. Unavailable when the server cannot be reached or answers
// other than 200; Corruption when the reply does not parse, Integrity when
// it is not granted or stamps another imprint or nonce. Blocks for at most
// timeout_s seconds.
Result<Bytes> RequestTimestamp(const std::string& url, ByteView data, int timeout_s = 30);

// Checks a stored TimeStampResp against `data`: status granted, the token's
// message imprint is SHA-256(data). With a non-empty `ca_pem` the token's
// signature and certificate chain are verified against it too (a TSA
// certificate with extendedKeyUsage timeStamping). Corruption when it does
// not parse; Integrity when it does not match or verify.
Result<TimestampInfo> CheckTimestamp(ByteView response_der, ByteView data, std::string_view ca_pem);

}  // namespace custos::evidence
