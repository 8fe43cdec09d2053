#!/bin/bash
# guest.sh — the VM test's checks, run inside the guest on every boot by the
# image's berth-vm-ctl.service (see build-image.sh) from the host's 9p share
# mounted at /mnt/ctl. The share's `phase` file says which step this boot
# is; each step writes the next one before it reboots (or is cut off):
#   install       dpkg -i the package, the example pods run, stop/start and
#                 restart keep the containers, then `systemctl reboot`
#   after-reboot  every pod back, the Volume's data intact, then a burst of
#                 manifest changes that the host cuts by killing the VM
#   after-crash   the agent starts, the pods run, the state converges back
#                 to the examples, then `systemctl poweroff`
# Each check appends one line to /mnt/ctl/results.txt:
#   PASS name: evidence | FAIL name: why | INFO name: text | TIME name: seconds
# Every wait has a timeout.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
S=/mnt/ctl
RES=$S/results.txt
API=http://127.0.0.1:7070
M=/etc/berth/manifests
VOL=/var/lib/berth/volumes/default/worker-data/log.txt
KEEP=/var/lib/berth-vmtest   # this test's own notes on the guest's disk

boot=$(( $(cat "$S/boots" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$S/boots"
phase=$(cat "$S/phase" 2>/dev/null || echo none)

line() { echo "$*" >> "$RES"; echo "VMTEST: $*"; sync "$RES" 2>/dev/null; }
pass() { line "PASS $1: $2"; }
fail() { line "FAIL $1: $2"; }
info() { line "INFO $1: $2"; }
timing() { line "TIME $1: $2"; }
check() { # check NAME EVIDENCE CMD...
  local n=$1 e=$2; shift 2
  if "$@"; then pass "$n" "$e"; else fail "$n" "$e"; fi
}
up() { cut -d' ' -f1 /proc/uptime; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
wait_until() { # wait_until SECONDS CMD...: poll once a second, SECONDS of wall time
  # (counting polls instead stretched a 480 s wait several times over
  # when each poll itself took seconds under TCG)
  local end=$(( $(date +%s) + $1 )); shift
  while [ "$(date +%s)" -lt "$end" ]; do "$@" && return 0; sleep 1; done
  "$@"
}
api() { curl -fsS -m 5 "$API$1" 2>/dev/null; }
healthy() { [ "$(api /healthz)" = ok ]; }
ready() { [ "$(api /readyz)" = ok ]; }
pods_json() { api /api/v1/pods || echo '{"items":[]}'; }
# name=phase/ready for every pod
pods_summary() {
  pods_json | jq -r '[.items[] | "\(.metadata.name)=\(.status.phase // "-")/\(any(.status.conditions[]?; .type == "Ready" and .status == "True"))"] | sort | join(" ")'
}
# the examples: two web replicas and the worker, all Running and Ready, nothing else
examples_ready() {
  pods_json | jq -e '[.items[] | select(.status.phase == "Running" and any(.status.conditions[]?; .type == "Ready" and .status == "True"))] as $r
    | (.items | length) == 3 and ($r | length) == 3
    and ([$r[] | select(.metadata.name | startswith("web-"))] | length) == 2
    and ([$r[] | select(.metadata.name == "worker")] | length) == 1' >/dev/null
}
# every pod the API lists Running, web and worker Ready
all_running() {
  pods_json | jq -e '(.items | length) >= 3
    and all(.items[]; .status.phase == "Running")
    and ([.items[] | select((.metadata.name | startswith("web-")) or .metadata.name == "worker")
          | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length) >= 3' >/dev/null
}
ids() { pods_json | jq -r '[.items[] | "\(.metadata.name)=\(.status.containerStatuses[0].containerID // "-")/\(.status.containerStatuses[0].restartCount // "-")"] | sort | join(" ")'; }
# PIDs of the containers' main processes (httpd and the worker's shell loop)
cpids() { pgrep -f 'httpd -f -p 8080|while true; do date' | sort -n | tr '\n' ' '; }
alive_all() { local p; for p in $1; do kill -0 "$p" 2>/dev/null || return 1; done; [ -n "$1" ]; }
cg_of() { local p; for p in $1; do echo -n "$p:$(cut -d: -f3 /proc/$p/cgroup 2>/dev/null) "; done; }
agent_active() { [ "$(systemctl is-active berth.service)" = active ]; }
up_and_healthy() { agent_active && healthy; }
dump() { # dump TAG: artifacts for a human
  journalctl -b -u berth.service --no-pager > "$S/journal-berth-$1.txt" 2>&1
  journalctl -b --no-pager -p warning > "$S/journal-warnings-$1.txt" 2>&1
  pods_json > "$S/pods-$1.json"
  api /api/v1/status > "$S/status-$1.json"
  systemd-cgls --no-pager > "$S/cgls-$1.txt" 2>&1
  # where this boot's time went (once a boot)
  [ -e "$S/boot-times-$boot.txt" ] || {
    systemd-analyze time; systemd-analyze critical-chain berth.service; systemd-analyze blame | head -25
  } > "$S/boot-times-$boot.txt" 2>&1
  sync
}
vol_first() { head -1 "$VOL" 2>/dev/null; }
vol_count() { wc -l < "$VOL" 2>/dev/null || echo 0; }
vol_has() { [ "$(vol_count)" -ge "$1" ]; }

# The power cut during an image pull: a registry on the guest's loopback
# (Debian's docker-registry, its storage read-only from the share, see
# make-pull-registry.sh) serving an image with a 96 MiB layer; the pod
# `pulled` checks that layer's checksum before it sleeps.
INGEST=/var/lib/berth/images/ingest
BLOBS=/var/lib/berth/images/blobs/sha256
registry_up() { curl -fsS -m 3 http://127.0.0.1:5000/v2/ >/dev/null 2>&1; }
start_registry() {
  systemctl stop vmtest-registry.service 2>/dev/null
  systemctl reset-failed vmtest-registry.service 2>/dev/null
  systemd-run --quiet --unit=vmtest-registry "$S/docker-registry" serve "$S/registry/config.yml" &&
    wait_until 60 registry_up
}
pull_pod() {
  cat > "$M/pulled.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: pulled
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: 127.0.0.1:5000/berth-vmtest/big:1
    command: ["sh", "-c", "sha256sum -c /big.sha256 > /verified 2>&1 || { cat /verified; exit 1; }; exec sleep 3599"]
EOF
}
# the largest file in the ingest dir (a blob being downloaded), in bytes
ingest_bytes() { find "$INGEST" -type f -printf '%s\n' 2>/dev/null | sort -n | tail -1; }
# every committed blob hashes to its name: "<bad count> <count>"
blobs_verify() {
  local f n=0 bad=0
  for f in "$BLOBS"/*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$(basename "$f")" ] || { bad=$((bad + 1)); echo "bad blob $f" >&2; }
  done
  echo "$bad $n"
}

# The cgroup v2 and host items of issue 19, on a systemd host with no
# network card (so no default route).
host_features() {
  local out rc pid cg cgd pw cw vip defroute body esc metrics
  out=$(berth doctor 2>&1); rc=$?
  echo "$out" > "$S/doctor.txt"
  doctor_ok() { [ "$rc" = 0 ] && grep -q '^ok  *cgroups: v2' <<<"$out" && grep -q 'berth.service KillMode: process' <<<"$out" && grep -q '^summary: ' <<<"$out"; }
  check doctor.runs "berth doctor exit $rc; $(grep -E '^summary|cgroups:|KillMode|PSI|CA cert' <<<"$out" | tr '\n' ' ')" doctor_ok
  pid=$(pgrep -f 'httpd -f -p 8080' | head -1)
  cg=$(cut -d: -f3 "/proc/$pid/cgroup" 2>/dev/null)
  cgd=/sys/fs/cgroup$cg
  check cgroup.oom-group "web container $cg memory.oom.group=$(cat "$cgd/memory.oom.group" 2>/dev/null)" \
    test "$(cat "$cgd/memory.oom.group" 2>/dev/null)" = 1
  pw=$(cat "$(dirname "$cgd")/cpu.weight" 2>/dev/null); cw=$(cat "$cgd/cpu.weight" 2>/dev/null)
  # 50m -> 51 shares -> 11 with the Kubernetes formula (the linear one gave the pod 2)
  check cgroup.cpu-weight "web (cpu request 50m): pod cpu.weight $pw, container cpu.weight $cw" \
    test -n "$pw" -a "$pw" = "$cw" -a "$pw" = 11
  metrics=$(api /metrics)
  check metrics.psi "$(grep -c '^berth_pod_pressure_seconds_total' <<<"$metrics") PSI series; $(grep -m1 '^berth_pod_pressure_seconds_total' <<<"$metrics")" \
    grep -q '^berth_pod_pressure_seconds_total{namespace="default",pod="worker",resource="memory"' <<<"$metrics"
  vip=$(api /api/v1/services | jq -r '.items[] | select(.metadata.name == "web") | .spec.clusterIP')
  # the image's stand-in uplink has a default route (as real hosts do):
  # take it away for this check, then put it back
  local saved
  saved=$(ip -4 route show default)
  [ -z "$saved" ] || ip -4 route del default
  defroute=$(ip -4 route show default)
  # the answer (stdout) and curl's complaint (stderr) apart: an error
  # message is not an answer
  local curl_rc curl_err
  curl -fsS -m 5 -o "$S/vip-body.txt" "http://$vip/" 2>"$S/vip-curl.err"; curl_rc=$?
  body=$(head -c 80 "$S/vip-body.txt" 2>/dev/null)
  curl_err=$(head -c 120 "$S/vip-curl.err")
  [ -z "$saved" ] || ip -4 route add $saved
  check service.vip-from-host "default route: '${defroute:-none}' (was '${saved}'); route $(ip -4 route show | grep -m1 "^10.45" ); curl http://$vip/: exit $curl_rc, '$(echo "$body" | tr '\n' ' ')' $curl_err" \
    test -n "$vip" -a -z "$defroute" -a "$curl_rc" = 0 -a -n "$body"
  esc=$(journalctl -b -u berth.service --no-pager -o cat | grep -c $'\e\[')
  check logs.no-colour "$esc journal lines of berth with ANSI escapes" test "$esc" = 0
}

# An upgrade to a newer version of the package: the agent restarts, the
# containers do not.
upgrade() {
  local pb pa ib ia mb ma v0 v1 t0
  if [ ! -f "$S/berth-upgrade.deb" ]; then fail upgrade.same-pids "no upgrade package in the share"; return; fi
  wait_until 120 examples_ready
  pb=$(cpids); ib=$(ids); mb=$(systemctl show -p MainPID --value berth.service)
  v0=$(dpkg-query -W -f='${Version}' berth)
  t0=$(now)
  dpkg -i "$S/berth-upgrade.deb" > "$S/dpkg-upgrade.txt" 2>&1 || fail upgrade.install "$(tail -5 "$S/dpkg-upgrade.txt" | tr '\n' ' ')"
  v1=$(dpkg-query -W -f='${Version}' berth)
  wait_until 60 healthy
  wait_until 60 ready
  wait_until 120 examples_ready
  sleep 10
  pa=$(cpids); ia=$(ids); ma=$(systemctl show -p MainPID --value berth.service)
  check upgrade.install "$v0 -> $v1 in $(since "$t0")s; agent pid $mb -> $ma, $(systemctl is-active berth.service)" \
    test "$v0" != "$v1" -a "$mb" != "$ma" -a "$ma" != 0
  check upgrade.same-pids "before: $pb | after: $pa; containers before: $ib | after: $ia" \
    test -n "$pb" -a "$pb" = "$pa" -a "$ib" = "$ia"
}

# apt remove: the agent stops, the containers are stopped, the volumes stay;
# apt purge: says what it removes, and removes the state.
remove_and_purge() {
  local out pb left
  pb=$(cpids)
  out=$(apt-get remove -y berth 2>&1); echo "$out" > "$S/apt-remove.txt"
  sleep 2
  left=$(cpids)
  check remove.stops-agent "after apt remove: berth.service $(systemctl is-active berth.service 2>&1), /usr/bin/berth $( [ -e /usr/bin/berth ] && echo present || echo gone)" \
    test "$(systemctl is-active berth.service 2>&1)" != active -a ! -e /usr/bin/berth
  check remove.stops-containers "container pids before: $pb, after: '${left}'; $(grep -m1 'berth-stop-containers' <<<"$out")" \
    test -n "$pb" -a -z "$left"
  check remove.keeps-volumes "$VOL: $(vol_count) lines, first '$(vol_first)'; $(grep -m1 'kept /var/lib/berth' <<<"$out" | cut -c1-120)" \
    test "$(vol_count)" -gt 0 -a -d /var/lib/berth/images
  out=$(apt-get purge -y berth 2>&1); echo "$out" > "$S/apt-purge.txt"
  check purge.says-what "$(grep 'berth: ' <<<"$out" | tr '\n' ' ' | cut -c1-300)" \
    grep -q 'purging deletes /var/lib/berth' <<<"$out"
  check purge.removes-state "/var/lib/berth $( [ -e /var/lib/berth ] && echo present || echo gone), /etc/berth $( [ -e /etc/berth ] && echo present || echo gone), dpkg: $(dpkg-query -W -f='${Status}' berth 2>&1)" \
    test ! -e /var/lib/berth -a ! -e /etc/berth
}

echo "VMTEST: boot $boot, phase $phase, uptime $(up)s"
info "boot.$boot" "phase $phase, userspace reached the test $(up)s after kernel start; $(systemctl is-system-running 2>&1)"
mkdir -p -m 0700 "$KEEP"

phase_install() {
  local t0 fs v1 st before after pb pa ib ia
  fs=$(stat -fc %T /sys/fs/cgroup)
  v1=$(awk '$3 == "cgroup" {print $2}' /proc/mounts | tr '\n' ' ')
  check guest.cgroup-v2-only "/sys/fs/cgroup is $fs; v1 mounts: '${v1}'; $(uname -r); $(systemctl --version | head -1)" \
    test "$fs" = cgroup2fs -a -z "$v1"

  t0=$(now)
  if dpkg -i "$S/berth.deb" > "$S/dpkg-install.txt" 2>&1; then
    pass package.install "dpkg -i berth.deb in $(since "$t0")s: $(dpkg-query -W -f='${Package} ${Version} ${Status}' berth)"
  else
    fail package.install "dpkg -i failed: $(tail -5 "$S/dpkg-install.txt" | tr '\n' ' ')"
  fi
  local files="" f
  for f in /usr/bin/berth /usr/bin/berth-shim /usr/bin/berth-supervise /lib/systemd/system/berth.service /etc/berth/config.yaml; do
    [ -e "$f" ] || files="$files $f"
  done
  local mode_state mode_etc conff enabled props
  mode_state=$(stat -c %a /var/lib/berth 2>/dev/null)
  mode_etc=$(stat -c %a /etc/berth/manifests 2>/dev/null)
  conff=$(dpkg-query -W -f='${Conffiles}' berth 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
  check package.files "missing:'${files}' /var/lib/berth mode $mode_state, /etc/berth/manifests mode $mode_etc, conffiles: $conff" \
    test -z "$files" -a "$mode_state" = 700 -a "$mode_etc" = 700 -a "$conff" = "/etc/berth/config.yaml "
  enabled=$(systemctl is-enabled berth.service 2>&1)
  props=$(systemctl show -p Delegate -p KillMode -p Restart -p LimitNOFILE -p After berth.service | tr '\n' ' ')
  unit_ok() {
    [ "$enabled" = enabled ] && grep -q 'Delegate=yes' <<<"$props" && grep -q 'KillMode=process' <<<"$props" &&
      grep -q 'Restart=always' <<<"$props" && grep -q 'network-online.target' <<<"$props" && ! grep -q 'LimitNOFILE=1024 ' <<<"$props"
  }
  check unit.settings "is-enabled $enabled; $props" unit_ok
  if wait_until 60 up_and_healthy; then
    pass agent.started-by-package "active and /healthz ok $(since "$t0")s after dpkg -i began"
  else
    fail agent.started-by-package "$(systemctl status --no-pager berth.service 2>&1 | head -15 | tr '\n' ' ')"
  fi

  # The user's steps: an image archive into the import dir, manifests in place.
  install -d -m 0700 /var/lib/berth/images/import
  cp "$S/busybox-oci.tar" /var/lib/berth/images/import/
  cp "$S"/manifests/*.yaml "$M/"
  cp "$S"/manifests/web.yaml "$KEEP/web.yaml"
  t0=$(now)
  if wait_until 480 examples_ready; then
    pass pods.ready "web x2 and worker Running and Ready $(since "$t0")s after the manifests: $(pods_summary)"
    timing manifests-to-pods-ready "$(since "$t0")"
  else
    fail pods.ready "after 480s: $(pods_summary)"
  fi
  dump running

  # systemctl stop leaves the containers; start adopts them.
  pb=$(cpids); ib=$(ids)
  info placement "container pids and cgroups: $(cg_of "$pb"); supervisors: $(cg_of "$(pgrep -f '^berth-supervise|/berth-supervise' | tr '\n' ' ')")"
  systemctl stop berth.service
  sleep 3
  st=$(systemctl is-active berth.service)
  check stop.keeps-containers "agent $st after systemctl stop; container pids $pb alive: $(alive_all "$pb" && echo yes || echo no)" alive_all "$pb"
  t0=$(now)
  systemctl start berth.service
  if wait_until 60 healthy; then
    timing systemctl-start-to-api-ready "$(since "$t0")"
    pass start.api-ready "/healthz ok $(since "$t0")s after systemctl start"
  else
    fail start.api-ready "no /healthz 60s after systemctl start"
  fi
  wait_until 60 ready && timing systemctl-start-to-readyz "$(since "$t0")"

  # systemctl restart keeps the same containers and processes.
  wait_until 120 examples_ready
  pb=$(cpids); ib=$(ids)
  systemctl restart berth.service
  t0=$(now)
  wait_until 60 healthy
  wait_until 60 ready
  wait_until 120 examples_ready
  sleep 10   # a few reconcile passes: a wrongly restarted container shows now
  pa=$(cpids); ia=$(ids)
  check restart.same-pids "before: $pb | after: $pa" test -n "$pb" -a "$pb" = "$pa"
  check restart.same-containers "before: $ib | after: $ia" test -n "$ib" -a "$ib" = "$ia"
  info placement-after-restart "container pids and cgroups: $(cg_of "$pa"); berth.service NRestarts=$(systemctl show -p NRestarts --value berth.service)"

  host_features
  upgrade

  # the Volume has data to compare after the reboot
  wait_until 30 vol_has 2
  vol_first > "$KEEP/vol-first"; vol_count > "$KEEP/vol-count"; sync
  check volume.written "$VOL: $(vol_count) lines, first '$(vol_first)'" test "$(vol_count)" -ge 2
  dump install
  echo after-reboot > "$S/phase"; sync
  info reboot "systemctl reboot at uptime $(up)s"
  systemctl reboot
}

phase_after_reboot() {
  local t first count c2
  if wait_until 480 examples_ready; then
    t=$(up)
    pass reboot.pods-ready "$(pods_summary), $t s after kernel start"
    timing boot-to-pods-ready "$t"
  else
    fail reboot.pods-ready "480s after the test started: $(pods_summary); agent $(systemctl is-active berth.service)"
  fi
  check reboot.agent-active "berth.service $(systemctl is-active berth.service), NRestarts=$(systemctl show -p NRestarts --value berth.service)" agent_active
  first=$(cat "$KEEP/vol-first" 2>/dev/null); count=$(cat "$KEEP/vol-count" 2>/dev/null || echo 0)
  check reboot.volume-intact "first line before '$first', now '$(vol_first)'; lines before $count, now $(vol_count)" \
    test -n "$first" -a "$first" = "$(vol_first)" -a "$(vol_count)" -ge "$count"
  info reboot.berth-shutdown "previous boot: $(journalctl -b -1 -u berth-shutdown.service --no-pager -o cat 2>/dev/null | tr '\n' ' ')"
  c2=$(vol_count)
  check reboot.volume-appended "the worker writes again: $c2 lines, then $(wait_until 20 vol_has $((c2 + 1)); vol_count)" \
    test "$(vol_count)" -gt "$c2"
  dump after-reboot

  # A burst of manifest changes (non-atomic writes, removals, rescales);
  # the host kills the VM somewhere in it.
  echo after-crash > "$S/phase"; sync
  if start_registry; then
    info pull "registry on 127.0.0.1:5000 up at uptime $(up)s"
  else
    fail power-off.during-pull "the guest's registry did not answer: $(systemctl status --no-pager vmtest-registry.service 2>&1 | head -8 | tr '\n' ' ')"
  fi
  pull_pod
  # tell the host when a good part of the layer is on disk, not all of it
  (
    for _ in $(seq 900); do
      b=$(ingest_bytes)
      if [ -n "$b" ] && [ "$b" -ge $((8 << 20)) ]; then
        echo "$b" > "$S/pull-partial"; sync
        info pull "$b bytes of the layer in $INGEST at uptime $(up)s"
        exit 0
      fi
      sleep 0.2
    done
  ) &
  local i n end web=2
  end=$(( $(date +%s) + 240 ))
  date +%s > "$S/burst-started"; sync
  info burst "started at uptime $(up)s"
  i=0
  while [ "$(date +%s)" -lt "$end" ]; do
    i=$((i + 1)); n=$((i % 6))
    cat > "$M/burst-$n.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: burst-$n
  labels: {app: burst, round: "r$i"}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: berth.local/busybox:1.36
    command: ["sh", "-c", "echo round $i; exec sleep 3598"]
EOF
    [ $((i % 3)) = 0 ] && rm -f "$M/burst-$(((i + 3) % 6)).yaml"
    if [ $((i % 4)) = 0 ]; then
      web=$((5 - web))   # 2 <-> 3
      sed -i "s/^  replicas: .*/  replicas: $web/" "$M/web.yaml"
    fi
    echo "$i" > "$S/burst-rounds"
    sleep 0.3
  done
  fail power-off.during-burst "the burst ran 240s and the host never killed the VM"
}

# After the power cut in the middle of the pull: the partial download is
# gone (discarded) or finished (resumed), the pod runs on a layer whose
# content checks out, and every blob in the store matches its digest.
pull_checks() {
  local at left pid v bv
  at=$(cat "$S/pull-partial" 2>/dev/null)
  pulled_runs() { pid=$(pgrep -fx 'sleep 3599' | head -1); [ -n "$pid" ] && [ -s "/proc/$pid/root/verified" ]; }
  wait_until 300 pulled_runs
  v=$(cat "/proc/$pid/root/verified" 2>/dev/null)
  left=$(find "$INGEST" -type f -printf '%f:%s ' 2>/dev/null)
  check crash.pull-completes "partial layer at the cut: ${at:-none} bytes; now: pod pulled pid ${pid:-none}, its check of the 96 MiB layer: '$v'; ingest: '${left}'" \
    test -n "$at" -a "$v" = "/big: OK" -a -z "$left"
  bv=$(blobs_verify)
  check crash.blobs-verify "$(cut -d' ' -f1 <<<"$bv") of $(cut -d' ' -f2 <<<"$bv") blobs in $BLOBS do not match their digest" \
    test "$(cut -d' ' -f1 <<<"$bv")" = 0 -a "$(cut -d' ' -f2 <<<"$bv")" -gt 0
}

phase_after_crash() {
  local t0 t first
  t0=$(now)
  # the registry first (a transient unit: gone with the power): the pod
  # `pulled` waits for it, and crash.pods-run waits for that pod
  start_registry || info pull "the guest's registry did not answer after the power cut"
  if wait_until 180 up_and_healthy; then
    pass crash.agent-starts "active, /healthz ok at uptime $(up)s"
  else
    fail crash.agent-starts "$(systemctl status --no-pager berth.service 2>&1 | head -15 | tr '\n' ' ')"
  fi
  info crash.manifests "$(cd "$M" && for f in *; do echo -n "$f:$(stat -c %s "$f") "; done)"
  info crash.source-status "$(api /api/v1/status | head -c 600)"
  info crash.fs "$(dmesg | grep -E 'EXT4-fs \(vda\)' | tr '\n' ' ')"
  if wait_until 480 all_running; then
    t=$(up)
    pass crash.pods-run "$(pods_summary) at uptime $t s"
    timing crash-boot-to-pods-running "$t"
  else
    fail crash.pods-run "after 480s: $(pods_summary)"
  fi
  pull_checks
  check crash.agent-stable "NRestarts=$(systemctl show -p NRestarts --value berth.service), $(systemctl is-active berth.service)" \
    test "$(systemctl show -p NRestarts --value berth.service)" = 0
  first=$(cat "$KEEP/vol-first" 2>/dev/null)
  check crash.volume-intact "first line before '$first', now '$(vol_first)', $(vol_count) lines" test -n "$first" -a "$first" = "$(vol_first)"
  dump after-crash

  # back to the examples: the burst's pods go, web returns to 2 replicas
  rm -f "$M"/burst-*.yaml "$M/pulled.yaml"
  cp "$KEEP/web.yaml" "$M/web.yaml"
  t0=$(now)
  converged() { examples_ready && ! pgrep -fx 'sleep 359[89]' >/dev/null; }
  if wait_until 300 converged; then
    pass crash.converges "examples only $(since "$t0")s after restoring the manifests: $(pods_summary)"
  else
    fail crash.converges "after 300s: $(pods_summary); burst processes: $(pgrep -fx "sleep 3598" | tr '\n' ' ')"
  fi
  dump converged
  remove_and_purge
  echo done > "$S/phase"
  date +%s > "$S/done"; sync
  systemctl poweroff
}

case "$phase" in
  install) phase_install ;;
  after-reboot) phase_after_reboot ;;
  after-crash) phase_after_crash ;;
  *) info guest "nothing to do in phase '$phase'"; date +%s > "$S/done"; sync; systemctl poweroff ;;
esac
