"""Certificates made at test time with the `openssl` command: RSA and EC
keys, a CA and the leaves it signs (with SAN sets), self-signed ones and
expired ones.  Each `Cert` has its key and certificate files and the PEM
bundle Unit's users upload (`bundle()`)."""

import os
import subprocess

OPENSSL = "openssl"


def _run(args, cwd):
    subprocess.run([OPENSSL] + args, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Cert:
    def __init__(self, directory, name):
        self.dir = str(directory)
        self.name = name
        self.key = os.path.join(self.dir, name + ".key")
        self.crt = os.path.join(self.dir, name + ".crt")

    def key_pem(self):
        with open(self.key, "rb") as f:
            return f.read()

    def crt_pem(self):
        with open(self.crt, "rb") as f:
            return f.read()

    def bundle(self, *chain):
        """Leaf first, then chain's certificates, then the key."""
        return self.crt_pem() + b"".join(c.crt_pem() for c in chain) \
            + self.key_pem()


def _newkey(ec):
    if ec:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    return ["-newkey", "rsa:2048"]


def _ext_file(directory, name, sans, ca, ext=()):
    path = os.path.join(str(directory), name + ".ext")
    lines = ["basicConstraints=critical,CA:%s" % ("TRUE" if ca else "FALSE")]
    lines += list(ext)
    if sans:
        lines.append("subjectAltName=" + ",".join(
            s if ":" in s else "DNS:" + s for s in sans))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_cert(directory, name, cn, sans=(), issuer=None, ec=False,
              days=30, ca=False, expired=False, ext=()):
    """A certificate for cn (SAN DNS names sans) signed by issuer (a Cert;
    None: self-signed).  expired: valid in January 2020 only.  ext: more
    extension lines ("authorityInfoAccess=OCSP;URI:http://...")."""
    c = Cert(directory, name)
    csr = os.path.join(c.dir, name + ".csr")
    ext = _ext_file(directory, name, sans, ca, ext)
    _run(["req", "-new"] + _newkey(ec) + ["-nodes", "-keyout", c.key,
          "-out", csr, "-subj", "/C=FR/O=Wharf Tests/CN=%s" % cn], c.dir)
    if expired:
        _sign_expired(c, csr, ext, issuer)
        return c
    args = ["x509", "-req", "-in", csr, "-out", c.crt, "-days", str(days),
            "-extfile", ext, "-set_serial", str(int.from_bytes(os.urandom(6), "big"))]
    if issuer is None:
        args += ["-signkey", c.key]
    else:
        args += ["-CA", issuer.crt, "-CAkey", issuer.key]
    _run(args, c.dir)
    return c


def _sign_expired(c, csr, ext, issuer):
    """`openssl ca` is the one command that takes explicit dates."""
    work = os.path.join(c.dir, c.name + ".ca")
    os.makedirs(work, exist_ok=True)
    open(os.path.join(work, "index.txt"), "w").close()
    with open(os.path.join(work, "serial"), "w") as f:
        f.write("1000\n")
    cnf = os.path.join(work, "ca.cnf")
    with open(cnf, "w") as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\n"
                "new_certs_dir = .\nserial = serial\ndefault_md = sha256\n"
                "policy = p\nunique_subject = no\n"
                "[p]\ncommonName = supplied\n")
    args = ["ca", "-batch", "-config", cnf, "-in", csr, "-out", c.crt,
            "-notext", "-startdate", "20200101000000Z",
            "-enddate", "20200201000000Z", "-extfile", ext]
    if issuer is None:
        args += ["-selfsign", "-keyfile", c.key]
    else:
        args += ["-cert", issuer.crt, "-keyfile", issuer.key]
    _run(args, work)


class CertSet:
    """The usual cast: a CA, an RSA leaf it signed for example.com and
    *.example.com, an EC leaf for ec.test, a wildcard, an expired one."""

    def __init__(self, directory):
        d = str(directory)
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.ca = make_cert(d, "ca", "Wharf Test CA", ca=True, days=365)
        self.rsa = make_cert(d, "rsa", "example.com",
                             sans=("example.com", "www.example.com"),
                             issuer=self.ca)
        self.ec = make_cert(d, "ec", "ec.test", sans=("ec.test",),
                            issuer=self.ca, ec=True)
        self.wild = make_cert(d, "wild", "*.wild.test",
                              sans=("*.wild.test",), issuer=self.ca,
                              ec=True)
        self.expired = make_cert(d, "expired", "old.test", ec=True,
                                 expired=True)
        self.other = make_cert(d, "other", "other.test", ec=True)
