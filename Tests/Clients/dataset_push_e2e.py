"""`gomodel datasets push` end to end, with the real binary, against two servers:
one with the built-in store, and one whose R2/S3 store is `rclone serve s3` (as R2 would be).

Usage: python dataset_push_e2e.py path/to/gomodel path/to/rclone
Checks: login (file mode 0600), push with the validation report, objects really in the bucket
(on rclone's disk), a second push that sends nothing, Ctrl-C mid-push and a resume that sends
only the rest, list/show, rm (objects gone), and the errors a user sees.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from support import check, free_port, own_environment, png, wait_serving

GOMODEL, RCLONE = os.path.abspath(sys.argv[1]), sys.argv[2]
R2_KEY, R2_SECRET = "GMTESTACCESSKEY0001", "e2e-secret/with+specials"


def make_dataset(folder, samples, filler=2000):
    """control/ + target/ folders with captions beside the targets, one sample without caption."""
    for sub in ("control", "target"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for index in range(samples):
        with open(os.path.join(folder, "control", f"pair {index}.PNG"), "wb") as f:
            f.write(png(640, 480, filler))
        with open(os.path.join(folder, "target", f"pair {index}.png"), "wb") as f:
            f.write(png(640, 480, filler))
        if index != 0:
            with open(os.path.join(folder, "target", f"pair {index}.txt"), "w") as f:
                f.write(f"make pair {index} look like a watercolour")


class Server:
    def __init__(self, work, extra_env):
        self.env = own_environment()
        self.env.update(extra_env, GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"))
        self.log = open(os.path.join(work, "serve.log"), "w")
        self.process = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = wait_serving(self.env["GOMODEL_DATA_DIR"], seconds=30)

    def gomodel(self, *args, input=None):
        return subprocess.run([GOMODEL, *args], env=self.env, capture_output=True, text=True, input=input, timeout=300)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)


def scenario(name, work, extra_env, bucket_root):
    print(name)
    server = Server(work, extra_env)
    try:
        check(server.gomodel("users", "create", "--email", "e2e@example.com", "--password", "correct horse battery").returncode == 0, "users create")
        token = server.gomodel("tokens", "create", "--email", "e2e@example.com").stdout.strip()
        bad = server.gomodel("login", "--server", server.base, "--token", "not-a-token")
        check(bad.returncode != 0 and "token" in bad.stderr.lower(), "login with a wrong token is refused: " + bad.stderr.strip().splitlines()[-1])
        login = server.gomodel("login", "--server", server.base + "/", input=token + "\n")
        check(login.returncode == 0 and "e2e@example.com" in login.stdout, "login reads the token from standard input")
        login_file = os.path.join(server.env["XDG_CONFIG_HOME"], "gomodel", "login.json")
        check(os.stat(login_file).st_mode & 0o777 == 0o600, "the login file is private (0600)")

        folder = os.path.join(work, "pairs")
        make_dataset(folder, 10)
        with open(os.path.join(folder, "README.md"), "w") as f:
            f.write("not part of the dataset")
        push = server.gomodel("datasets", "push", folder, "--name", "e2e pairs")
        check(push.returncode == 0, "push succeeds: " + push.stderr[-300:])
        check("Uploaded 29 files" in push.stdout, "29 files uploaded (10 + 10 images, 9 captions)")
        check("Left out README.md" in push.stdout, "the README is left out, with the reason")
        check("Not ready to train: 1 problem" in push.stdout and "target/pair 0.png has no caption" in push.stdout,
              "the report names the missing caption")
        check("29/29 files" in push.stderr, "progress shows files done")
        dataset_id = push.stdout.split("(")[1].split(")")[0]
        if bucket_root:
            stored = os.path.join(bucket_root, "datasets", dataset_id, "control_1", "pair 3.png")
            with open(stored, "rb") as f, open(os.path.join(folder, "control", "pair 3.PNG"), "rb") as g:
                check(f.read() == g.read(), "the object sits in rclone's bucket under the canonical key, byte for byte")

        again = server.gomodel("datasets", "push", folder, "--name", "e2e pairs")
        check(again.returncode == 0 and "Uploaded 0 files" in again.stdout and "29 already there" in again.stdout, "a second push sends nothing")
        with open(os.path.join(folder, "target", "pair 0.txt"), "w") as f:
            f.write("make pair 0 look like a watercolour")
        fixed = server.gomodel("datasets", "push", folder, "--name", "e2e pairs")
        check("Uploaded 1 file " in fixed.stdout and "Ready to train: 10 samples" in fixed.stdout, "adding the caption uploads one file and the dataset is ready")

        listed = server.gomodel("datasets", "list")
        check("e2e pairs  10 samples" in listed.stdout and "ready" in listed.stdout, "datasets list")
        shown = server.gomodel("datasets", "show", "e2e pairs")
        check("10 samples, 30 files" in shown.stdout and "1 control image(s) per sample" in shown.stdout, "datasets show by name")

        # Ctrl-C in the middle of a larger push, then a resume that sends only the rest.
        big = os.path.join(work, "big")
        make_dataset(big, 150, filler=200_000)
        process = subprocess.Popen([GOMODEL, "datasets", "push", big, "--name", "big", "--concurrency", "2"],
                                   env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        recorded = 0
        deadline = time.time() + 120
        while recorded == 0 and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
            listing = server.gomodel("datasets", "list").stdout
            for line in listing.splitlines():
                if "  big  " in line:
                    recorded = int(line.split("  big  ")[1].split(" samples")[0]) or 0
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
        check(process.returncode == 130 and "Interrupted" in errors, "Ctrl-C stops the push (exit 130) and says how to go on")
        resumed = server.gomodel("datasets", "push", big, "--name", "big")
        check(resumed.returncode == 0, "the resumed push succeeds")
        uploaded = int(resumed.stdout.split("Uploaded ")[1].split(" file")[0])
        unchanged = int(resumed.stdout.split("; ")[1].split(" already")[0])
        check(unchanged > 0 and uploaded + unchanged == 449, f"the resume sends only the rest ({uploaded} sent, {unchanged} kept)")

        missing = server.gomodel("datasets", "push", os.path.join(work, "nope"), "--name", "x")
        check(missing.returncode != 0 and "is not a folder" in missing.stderr, "a missing folder is a clear error")
        rm = server.gomodel("datasets", "rm", "e2e pairs", "--yes")
        check(rm.returncode == 0, "datasets rm")
        if bucket_root:
            # rclone may leave emptied folders behind for a moment: what counts is that no object is left.
            left = [name for _, _, names in os.walk(os.path.join(bucket_root, "datasets", dataset_id)) for name in names]
            check(not left, f"its objects are gone from the bucket (left: {left[:5]})")
        gone = server.gomodel("datasets", "show", dataset_id)
        check(gone.returncode != 0 and "No dataset with this id" in gone.stderr, "a deleted dataset is not found")
    except Exception:
        server.log.flush()
        print("--- server log", file=sys.stderr)
        print(open(server.log.name).read()[-3000:], file=sys.stderr)
        raise
    finally:
        server.stop()


def main():
    with tempfile.TemporaryDirectory() as work:
        os.makedirs(os.path.join(work, "builtin"))
        scenario("built-in store", os.path.join(work, "builtin"), {}, None)

        root = os.path.join(work, "rclone-root")
        os.makedirs(os.path.join(root, "trainer"))
        port = free_port()
        rclone = subprocess.Popen([RCLONE, "serve", "s3", "--auth-key", f"{R2_KEY},{R2_SECRET}", "--addr", f"127.0.0.1:{port}",
                                   "--log-level", "ERROR", root], stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "rclone.log"), "w"))
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            os.makedirs(os.path.join(work, "r2"))
            try:
                scenario("rclone serve s3 as the R2/S3 store", os.path.join(work, "r2"), {
                    "R2_BUCKET": "trainer", "R2_ENDPOINT": f"http://127.0.0.1:{port}",
                    "R2_ACCESS_KEY_ID": R2_KEY, "R2_SECRET_ACCESS_KEY": R2_SECRET,
                }, os.path.join(root, "trainer"))
            except Exception:
                # Its own errors (an HTTP 500 from rclone was seen once, 2026-11-30).
                print("--- rclone serve s3 log\n" + open(os.path.join(work, "rclone.log")).read()[-3000:], file=sys.stderr)
                raise
        finally:
            rclone.terminate()
            rclone.wait(timeout=10)
    print("dataset push end to end: all passed")


if __name__ == "__main__":
    main()
