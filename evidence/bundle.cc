#include "evidence/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <map>
#include <memory>
#include <set>

#include "base/bytes.h"
#include "base/file_util.h"
#include "evidence/checkpoint.h"
#include "evidence/ledger.h"

namespace custos::evidence {

using nlohmann::json;

namespace {

constexpr char kTmpPrefix[] = ".custos-bundle-";
// The tar convention: 10240-byte records (blocking factor 20), as exports (D23).
constexpr int kBytesPerBlock = 10240;

// A host name as a file name: [A-Za-z0-9._-] kept, anything else '_'.
std::string SafeFileName(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}


// Writes tar members to an fd and keeps SHA256SUMS as it goes.
class TarWriter {
 public:
  TarWriter(int fd, time_t mtime) : fd_(fd), mtime_(mtime) {}
  ~TarWriter() {
    if (a_) archive_write_free(a_);
  }

  Status Open() {
    a_ = archive_write_new();
    if (!a_) return IOError("bundle: libarchive: out of memory");
    // ustar headers, pax extended headers only where a name needs them.
    if (archive_write_set_format_pax_restricted(a_) != ARCHIVE_OK) return Fatal("format");
    archive_write_set_bytes_per_block(a_, kBytesPerBlock);
    archive_write_set_bytes_in_last_block(a_, kBytesPerBlock);
    if (archive_write_open2(a_, this, nullptr, &TarWriter::Sink, nullptr, nullptr) != ARCHIVE_OK) return Fatal("open");
    return Status::Ok();
  }

  // A member from memory; listed in SHA256SUMS unless `listed` is false.
  Status AddBytes(const std::string& name, std::string_view data, int mode = 0644, bool listed = true) {
    RETURN_IF_ERROR(Header(name, data.size(), mode));
    RETURN_IF_ERROR(Data(AsBytes(data)));
    RETURN_IF_ERROR(Finish(name));
    if (listed) sums_ += Sha256(AsBytes(data)).Hex() + "  " + name + "\n";
    return Status::Ok();
  }

  // A member made of files on disk, in order, each followed by `separator`
  // when it does not end with it (0: nothing added). `expect` (optional)
  // gives each file's SHA-256: a file whose bytes differ stops the bundle.
  Status AddFiles(const std::string& name, const std::vector<std::string>& paths, const std::vector<std::string>& expect,
                  char separator) {
    struct Part {
      Fd fd;
      uint64_t size;
      bool add_sep;
    };
    std::vector<Part> parts;
    uint64_t total = 0;
    for (const auto& p : paths) {
      Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return ErrnoStatus("bundle: " + p, errno);
      struct stat sb;
      if (::fstat(fd.get(), &sb) != 0) return ErrnoStatus("bundle: " + p + ": stat", errno);
      uint64_t size = uint64_t(sb.st_size);
      bool add_sep = false;
      if (separator && size > 0) {
        uint8_t last = 0;
        RETURN_IF_ERROR(ReadAt(fd.get(), size - 1, 1, &last, p));
        add_sep = last != uint8_t(separator);
      } else if (separator && size == 0) {
        add_sep = false;
      }
      total += size + (add_sep ? 1 : 0);
      parts.push_back({std::move(fd), size, add_sep});
    }
    RETURN_IF_ERROR(Header(name, total, 0644));
    Sha256Stream whole;
    Bytes buf(kCopyBlock);
    for (size_t i = 0; i < parts.size(); ++i) {
      Sha256Stream one;
      uint64_t off = 0;
      while (off < parts[i].size) {
        size_t n = size_t(std::min<uint64_t>(buf.size(), parts[i].size - off));
        RETURN_IF_ERROR(ReadAt(parts[i].fd.get(), off, n, buf.data(), paths[i]));
        ByteView chunk(buf.data(), n);
        one.Update(chunk);
        whole.Update(chunk);
        RETURN_IF_ERROR(Data(chunk));
        off += n;
      }
      if (!expect.empty() && one.Finish().Hex() != expect[i]) {
        return IntegrityError("bundle: object " + expect[i] + " in the store does not match its hash (" + paths[i] + ")");
      }
      if (parts[i].add_sep) {
        uint8_t sep = uint8_t(separator);
        whole.Update(ByteView(&sep, 1));
        RETURN_IF_ERROR(Data(ByteView(&sep, 1)));
      }
    }
    RETURN_IF_ERROR(Finish(name));
    sums_ += whole.Finish().Hex() + "  " + name + "\n";
    return Status::Ok();
  }

  Status Close() {
    if (archive_write_close(a_) != ARCHIVE_OK) return Fatal("close");
    return Status::Ok();
  }

  const std::string& sums() const { return sums_; }

 private:
  static la_ssize_t Sink(struct archive* a, void* self, const void* buf, size_t n) {
    auto* w = static_cast<TarWriter*>(self);
    Status st = WriteAll(w->fd_, ByteView(static_cast<const uint8_t*>(buf), n), "bundle output");
    if (!st.ok()) {
      if (w->error_.ok()) w->error_ = st;
      archive_set_error(a, EIO, "%s", st.message().c_str());
      return -1;
    }
    return la_ssize_t(n);
  }

  Status Fatal(const std::string& what) {
    if (!error_.ok()) return error_;
    const char* msg = a_ ? archive_error_string(a_) : nullptr;
    return IOError("bundle: " + what + ": " + (msg ? msg : "libarchive error"));
  }

  Status Header(const std::string& name, uint64_t size, int mode) {
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(), archive_entry_free);
    if (!e) return IOError("bundle: libarchive: out of memory");
    archive_entry_copy_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), mode);
    archive_entry_set_size(e.get(), int64_t(size));
    archive_entry_set_mtime(e.get(), mtime_, 0);
    if (archive_write_header(a_, e.get()) != ARCHIVE_OK) return Fatal(name);
    return Status::Ok();
  }

  Status Data(ByteView d) {
    size_t done = 0;
    while (done < d.size()) {
      la_ssize_t w = archive_write_data(a_, d.data() + done, d.size() - done);
      if (w <= 0) return Fatal("write");
      done += size_t(w);
    }
    return Status::Ok();
  }

  Status Finish(const std::string& name) {
    if (archive_write_finish_entry(a_) != ARCHIVE_OK) return Fatal(name);
    return Status::Ok();
  }

  int fd_;
  time_t mtime_;
  struct archive* a_ = nullptr;
  Status error_;
  std::string sums_;
};

// What a bundle holds, read from its ledger.
struct Contents {
  std::vector<std::string> checkpoint_files;  // relative to the case directory
  std::vector<std::string> objects;           // each once, in order of first reference
  std::map<std::string, std::vector<std::string>> timelines;  // file name -> objects
};

Result<Contents> ReadContents(std::string_view ledger) {
  Contents c;
  std::set<std::string> seen;
  ScanOptions opts;
  opts.on_record = [&](const Record& r, std::string_view) -> Status {
    for (const auto& o : ObjectReferences(r.body)) {
      if (o.size() != 64 || !IsLowerHex(o)) {
        return CorruptionError("record " + std::to_string(r.header.seq) + ": object '" + EscapeForDisplay(o) + "' is not a SHA-256");
      }
      if (seen.insert(o).second) c.objects.push_back(o);
    }
    if (r.header.type == "checkpoint") {
      for (const char* k : {"text", "sig", "tsr"}) {
        std::string f = StringMember(r.body, k);
        if (f.empty()) continue;
        if (f.rfind("checkpoints/", 0) != 0 || f.find("..") != std::string::npos || f.find('/', 12) != std::string::npos) {
          return CorruptionError("record " + std::to_string(r.header.seq) + ": checkpoint file '" + EscapeForDisplay(f) + "' is not under checkpoints/");
        }
        c.checkpoint_files.push_back(f);
      }
    }
    if (r.header.type == "item" && StringMember(r.body, "artifact") == "timeline" && !StringMember(r.body, "object").empty()) {
      c.timelines[SafeFileName(StringMember(r.body, "host")) + ".body"].push_back(StringMember(r.body, "object"));
    }
    return Status::Ok();
  };
  ASSIGN_OR_RETURN(LedgerScan scan, ScanLedger(ledger, opts));
  if (scan.torn_bytes) return CorruptionError("bundle: the ledger to export does not end with a whole line");
  if (c.checkpoint_files.empty()) return CorruptionError("bundle: the ledger names no checkpoint");
  return c;
}

}  // namespace

std::string BundleRoot(const std::string& case_id) { return "custos-case-" + case_id; }

Status WriteBundle(const BundleSource& source, const SigningKey& key, const std::string& output_path) {
  ASSIGN_OR_RETURN(Contents contents, ReadContents(source.ledger));
  std::string dir = Dirname(output_path);
  uint8_t rnd[8];
  RandomBytes(rnd, sizeof rnd);
  std::string tmp = JoinPath(dir, kTmpPrefix + ToHex(rnd));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoStatus(output_path + ": create temporary", errno);
  struct Remove {
    std::string path;
    ~Remove() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } remove{tmp};

  const std::string root = BundleRoot(source.case_id) + "/";
  std::string fingerprint = KeyFingerprint(key.public_key);
  TarWriter w(fd.get(), time(nullptr));
  RETURN_IF_ERROR(w.Open());
  RETURN_IF_ERROR(w.AddBytes(root + "README", BundleReadme(source.case_id, fingerprint)));
  RETURN_IF_ERROR(w.AddBytes(root + "VERIFY.sh", VerifyScript(), 0755));
  RETURN_IF_ERROR(w.AddBytes(root + "pubkey.pem", PublicKeyPem(key.public_key)));
  if (!source.tsa_ca_pem.empty()) RETURN_IF_ERROR(w.AddBytes(root + "tsa-ca.pem", source.tsa_ca_pem));
  RETURN_IF_ERROR(w.AddBytes(root + "ledger.jsonl", source.ledger));
  for (const auto& f : contents.checkpoint_files) {
    RETURN_IF_ERROR(w.AddFiles(root + f, {JoinPath(source.case_dir, f)}, {}, 0));
  }
  for (const auto& o : contents.objects) {
    RETURN_IF_ERROR(w.AddFiles(root + "objects/" + o, {source.object_path(o)}, {o}, 0));
  }
  for (const auto& [name, objects] : contents.timelines) {
    std::vector<std::string> paths;
    for (const auto& o : objects) paths.push_back(source.object_path(o));
    RETURN_IF_ERROR(w.AddFiles(root + "timeline/" + name, paths, objects, '\n'));
  }
  // SHA256SUMS names files relative to the bundle folder (sha256sum -c runs there).
  std::string sums;
  for (size_t pos = 0; pos < w.sums().size();) {
    size_t nl = w.sums().find('\n', pos);
    std::string line = w.sums().substr(pos, nl - pos);
    sums += line.substr(0, 66) + line.substr(66 + root.size()) + "\n";
    pos = nl + 1;
  }
  RETURN_IF_ERROR(w.AddBytes(root + "SHA256SUMS", sums, 0644, false));
  auto sig = Sign(key, AsBytes(sums));
  RETURN_IF_ERROR(w.AddBytes(root + "SHA256SUMS.sig", AsString(sig), 0644, false));
  RETURN_IF_ERROR(w.Close());
  if (::fsync(fd.get()) != 0) return ErrnoStatus(output_path + ": fsync", errno);
  if (::close(fd.release()) != 0) return ErrnoStatus(output_path + ": close", errno);
  if (::rename(tmp.c_str(), output_path.c_str()) != 0) return ErrnoStatus(output_path + ": rename", errno);
  remove.path.clear();
  return FsyncDir(dir);
}

std::string BundleReadme(const std::string& case_id, const std::string& key_fingerprint) {
  return "Custos evidence bundle: case " + case_id + R"TXT(

Signing key (the appliance's Ed25519 key) fingerprint:
  )TXT" + key_fingerprint + R"TXT(
Compare it with the fingerprint you received from the appliance's operator
by another channel: everything below proves only that this key signed it.
  openssl pkey -pubin -in pubkey.pem -outform DER | sha256sum

Contents
  ledger.jsonl            the case's chain of custody, one JSON record a line
  checkpoints/N.txt       signed checkpoint: origin, number of records N, Merkle
                          root (base64) of ledger lines 1..N, time
  checkpoints/N.sig       raw Ed25519 signature of N.txt
  checkpoints/N.tsr       RFC 3161 timestamp of N.txt (when a TSA was configured)
  objects/<sha256>        evidence content, named by its SHA-256
  timeline/<host>.body    Sleuth Kit bodyfile of a host's timeline (mactime -b)
  pubkey.pem              the signing key;  tsa-ca.pem: the TSA's CA certificate
  SHA256SUMS, .sig        SHA-256 of every other file, signed
  VERIFY.sh               runs every check below: sh VERIFY.sh

Checking by hand (in this folder)
  openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin \
      -in SHA256SUMS -sigfile SHA256SUMS.sig
  sha256sum -c SHA256SUMS
  openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin \
      -in checkpoints/00000001.txt -sigfile checkpoints/00000001.sig
  openssl ts -verify -data checkpoints/00000001.txt \
      -in checkpoints/00000001.tsr -CAfile tsa-ca.pem
  Each ledger line's "prev" is the SHA-256 of the previous line's bytes
  without its newline (64 zeros on the first line):
      sed -n 1p ledger.jsonl | tr -d '\n' | sha256sum
  A checkpoint's root is the RFC 9162 Merkle tree hash of its first N lines:
  leaf = SHA-256(0x00 || line), node = SHA-256(0x01 || left || right).
  With Custos installed: custos evidence verify BUNDLE.tar --expect-key FINGERPRINT

Format: doc/formats/evidence.md in the Custos sources.
)TXT";
}

std::string VerifyScript() {
  return R"SH(#!/bin/sh
# VERIFY.sh: checks this Custos evidence bundle with standard tools only:
# POSIX sh, sha256sum, openssl, sed and xxd (and mkdir/rm for a scratch
# folder). Run it from anywhere: sh VERIFY.sh
# Prints what it checks, then OK, or FAILED and each problem; the exit
# status is 0 only when every check passed.
#   1. SHA256SUMS.sig is pubkey.pem's signature over SHA256SUMS
#   2. every file listed in SHA256SUMS has its hash (sha256sum -c)
#   3. every checkpoint's signature (and RFC 3161 token, if any)
#   4. the ledger's hash chain: each seq in order, each prev the SHA-256
#      of the previous line
#   5. the Merkle root (RFC 9162) of the lines the latest checkpoint covers
LC_ALL=C
export LC_ALL
case $0 in */*) cd "${0%/*}" || exit 2 ;; esac
fail=0
shown=0
bad() {
  fail=1
  shown=$((shown + 1))
  if [ $shown -le 20 ]; then echo "FAILED: $*"; fi
}
for f in pubkey.pem SHA256SUMS SHA256SUMS.sig ledger.jsonl; do
  [ -f "$f" ] || { echo "FAILED: $f is missing"; exit 1; }
done
tmp=.verify-tmp.$$
rm -rf "$tmp" && mkdir "$tmp" || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' INT TERM

fp=$(openssl pkey -pubin -in pubkey.pem -outform DER | sha256sum | sed 's/ .*//')
echo "signing key: sha256:$fp"
echo "  (compare it with the appliance key fingerprint you received separately)"

echo "1. SHA256SUMS.sig"
openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig >/dev/null 2>&1 ||
  bad "SHA256SUMS.sig does not verify with pubkey.pem (SHA256SUMS altered, or signed by another key)"

echo "2. sha256sum -c SHA256SUMS"
sha256sum --quiet --strict -c SHA256SUMS || bad "files differ from SHA256SUMS (named above)"

echo "3. checkpoint signatures"
latest=
for t in checkpoints/*.txt; do
  [ -f "$t" ] || { bad "no checkpoints"; break; }
  b=${t%.txt}
  openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin -in "$t" -sigfile "$b.sig" >/dev/null 2>&1 ||
    bad "$b.sig does not verify with pubkey.pem (checkpoint altered, or signed by another key)"
  if [ -f "$b.tsr" ]; then
    if [ -f tsa-ca.pem ]; then
      openssl ts -verify -data "$t" -in "$b.tsr" -CAfile tsa-ca.pem >/dev/null 2>&1 ||
        bad "$b.tsr: the RFC 3161 timestamp does not verify for $t"
    else
      echo "  note: $b.tsr present but no tsa-ca.pem to check it against"
    fi
  fi
  latest=$t
done

echo "4. ledger hash chain"
size=0
[ -n "$latest" ] && size=$(sed -n 2p "$latest")
case $size in '' | *[!0-9]*) bad "$latest: line 2 is not a tree size"; size=0 ;; esac
# The shell never reads the ledger line by line (its read builtin takes one
# byte per system call): sed turns each line into a shell command, which
# writes the line's bytes (l*) and, for the lines the latest checkpoint
# covers, 0x00 || the line (x*, the Merkle leaf input). Names count from
# 1000001 so that the shell's sorted glob keeps line order.
i=1000000
n=0
line_file() {
  i=$((i + 1))
  printf '%s' "$1" >"$tmp/l$i"
  [ $n -lt "$size" ] && printf '\000%s' "$1" >"$tmp/x$i"
  n=$((n + 1))
}
sed -e "s/'/'\\\\''/g" -e "s/^/line_file '/" -e "s/\$/'/" ledger.jsonl >"$tmp/ledger-cmds.sh"
. "$tmp/ledger-cmds.sh"
[ "$(xxd -s -1 -p ledger.jsonl)" = 0a ] || bad "ledger.jsonl: the last line has no newline (torn)"
if [ $n -eq 0 ]; then
  bad "ledger.jsonl is empty"
else
  # e<i>=<SHA-256 of line file l<i>>, then one check per line: seq in
  # place, prev equal to the previous line's hash.
  sha256sum "$tmp"/l1* | sed 's|^\([0-9a-f]*\)  .*/l\([0-9]*\)$|e\2=\1|' >"$tmp/hashes.sh"
  . "$tmp/hashes.sh"
  k=0
  check() {
    if [ "$1" = - ]; then
      bad "ledger line $((k + 1)) is not a v1 record"
    else
      if [ $k -eq 0 ]; then
        want=0000000000000000000000000000000000000000000000000000000000000000
      else
        eval "want=\$e$((1000000 + k))"
      fi
      if [ "$1" != $k ]; then
        bad "ledger line $((k + 1)): seq $1 where seq $k belongs (a record deleted, inserted or reordered)"
      elif [ "$2" != "$want" ]; then
        bad "ledger line $((k + 1)): prev is not the SHA-256 of line $k (record $((k - 1)) altered)"
      fi
    fi
    k=$((k + 1))
  }
  sed -e 's/^{"v":1,"seq":\([0-9]*\),"prev":"\([0-9a-f]*\)",.*/check \1 \2/' -e t -e 's/.*/check - -/' \
    ledger.jsonl >"$tmp/checks.sh"
  . "$tmp/checks.sh"
fi

echo "5. Merkle root of $latest"
if [ "$size" -gt $n ]; then
  bad "$latest covers $size records but ledger.jsonl has $n (ledger cut short)"
elif [ "$size" -gt 0 ]; then
  sha256sum "$tmp"/x1* | sed 's/ .*//' >"$tmp/level0"
  lv=0
  while [ "$(sed -n '$=' "$tmp/level$lv")" -gt 1 ]; do
    # Each hash as printf octal escapes (hex digit -> 4 bits -> 2+3+3 bits).
    sed -e 'y/0123456789abcdef/ghijklmnopqrstuv/' \
      -e 's/g/0000/g;s/h/0001/g;s/i/0010/g;s/j/0011/g;s/k/0100/g;s/l/0101/g;s/m/0110/g;s/n/0111/g' \
      -e 's/o/1000/g;s/p/1001/g;s/q/1010/g;s/r/1011/g;s/s/1100/g;s/t/1101/g;s/u/1110/g;s/v/1111/g' \
      -e 's/\([01][01]\)\([01][01][01]\)\([01][01][01]\)/A\1B\2C\3/g' \
      -e 's/A00/\\0/g;s/A01/\\1/g;s/A10/\\2/g;s/A11/\\3/g' \
      -e 's/B000/0/g;s/B001/1/g;s/B010/2/g;s/B011/3/g;s/B100/4/g;s/B101/5/g;s/B110/6/g;s/B111/7/g' \
      -e 's/C000/0/g;s/C001/1/g;s/C010/2/g;s/C011/3/g;s/C100/4/g;s/C101/5/g;s/C110/6/g;s/C111/7/g' \
      "$tmp/level$lv" >"$tmp/oct"
    next=$((lv + 1))
    # Pairs become 0x01 || left || right; a last odd node moves up as it is.
    j=1000000
    a=
    pair() {
      if [ -z "$a" ]; then
        a=$1
      else
        j=$((j + 1))
        printf "\\001$a$1" >"$tmp/n$next.$j"
        a=
      fi
    }
    sed -e "s/^/pair '/" -e "s/\$/'/" "$tmp/oct" >"$tmp/pairs.sh"
    . "$tmp/pairs.sh"
    sha256sum "$tmp"/n$next.* | sed 's/ .*//' >"$tmp/level$next"
    [ -n "$a" ] && sed -n '$p' "$tmp/level$lv" >>"$tmp/level$next"
    lv=$next
  done
  root=$(sed -n 1p "$tmp/level$lv")
  want=$(sed -n 3p "$latest" | openssl base64 -d -A | xxd -p -c 64)
  [ "$root" = "$want" ] ||
    bad "$latest: root $want is not the Merkle root $root of the first $size ledger lines (records altered, removed or reordered)"
fi

if [ $fail -eq 0 ]; then
  echo "OK: $n records, latest checkpoint $latest covers $size"
  exit 0
fi
[ $shown -gt 20 ] && echo "... and $((shown - 20)) more problems"
echo "FAILED"
exit 1
)SH";
}

}  // namespace custos::evidence
