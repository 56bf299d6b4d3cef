/* Runs before anything else in a Tunelab program, compiled for the baseline x86-64 CPU (unlike
 * the Rust code, which is built for the instruction sets build.rs passes here as NEED_*): when
 * this CPU lacks one of them, say so and stop, instead of dying later of an illegal instruction.
 *
 * TUNELAB_ASSUME_CPU_LACKS=name[,name...] treats those instruction sets as missing, so the
 * refusal itself can be tested on any machine. */
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set to 1 once the check has run and passed; read by the Rust side. */
int tunelab_cpu_check_passed = 0;

static void say(const char *text) {
    ssize_t ignored = write(2, text, strlen(text));
    (void)ignored;
}

/* Whether the operating system saves the AVX registers (XCR0 bits 1 and 2). */
static int os_saves_avx(unsigned int ecx1) {
    if (!(ecx1 & bit_OSXSAVE)) return 0;
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}

static int assumed_missing(const char *name) {
    const char *list = getenv("TUNELAB_ASSUME_CPU_LACKS");
    if (!list) return 0;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

__attribute__((constructor)) static void tunelab_check_cpu(void) {
    unsigned int a, b, c1 = 0, d, b7 = 0, c7 = 0, cx = 0;
    if (__get_cpuid(1, &a, &b, &c1, &d) == 0) c1 = 0;
    if (__get_cpuid_count(7, 0, &a, &b7, &c7, &d) == 0) b7 = 0;
    if (__get_cpuid(0x80000001, &a, &b, &cx, &d) == 0) cx = 0;
    int avx_state = os_saves_avx(c1);
    struct { const char *name; int present; int needed; } sets[] = {
        {"avx", avx_state && (c1 & bit_AVX),
#ifdef NEED_AVX
         1},
#else
         0},
#endif
        {"avx2", avx_state && (b7 & bit_AVX2),
#ifdef NEED_AVX2
         1},
#else
         0},
#endif
        {"fma", avx_state && (c1 & bit_FMA),
#ifdef NEED_FMA
         1},
#else
         0},
#endif
        {"f16c", c1 & bit_F16C,
#ifdef NEED_F16C
         1},
#else
         0},
#endif
        {"bmi1", b7 & bit_BMI,
#ifdef NEED_BMI1
         1},
#else
         0},
#endif
        {"bmi2", b7 & bit_BMI2,
#ifdef NEED_BMI2
         1},
#else
         0},
#endif
        {"lzcnt", cx & bit_LZCNT,
#ifdef NEED_LZCNT
         1},
#else
         0},
#endif
        {"movbe", c1 & bit_MOVBE,
#ifdef NEED_MOVBE
         1},
#else
         0},
#endif
    };
    int missing = 0;
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (!sets[i].needed || (sets[i].present && !assumed_missing(sets[i].name))) continue;
        if (!missing) {
            say("tunelab: this build of Tunelab needs an x86-64-v3 CPU (AVX2 and FMA: Intel "
                "since Haswell, 2013; AMD since Excavator, 2015), and this CPU lacks:");
        }
        say(" ");
        say(sets[i].name);
        missing++;
    }
    if (missing) {
        say(".\nBuild Tunelab for this CPU from source: RUSTFLAGS=\"-C target-cpu=native\" "
            "scripts/setup.sh (docs/benchmarks.md, \"CPU instruction sets\").\n");
        _exit(78);
    }
    tunelab_cpu_check_passed = 1;
}
