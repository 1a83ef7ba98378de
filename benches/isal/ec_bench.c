// ISA-L baseline for `benches/ecc.bench.mjs`: k + m Reed-Solomon (Cauchy, as ISA-L's own
// erasure_code_perf) with shards of `size` bytes, one thread. Prints JSON: data bytes per second for
// encode, reconstruct of 1 lost and of m lost data shards (median of `rounds` rounds).
//   cc -O2 -o ec_bench ec_bench.c -lisal && ./ec_bench 10 4 1048576
#include <isa-l/erasure_code.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

// Rebuild the first `lost` data shards from the others; returns 0 on success.
static int setup_decode(int k, int m, int lost, unsigned char *encode_matrix, unsigned char *g_tbls,
                        int *src_idx) {
  unsigned char b[256 * 256], inv[256 * 256], dm[256 * 256];
  int r = 0;
  for (int i = lost; r < k; i++) src_idx[r++] = i;
  for (int i = 0; i < k; i++) memcpy(&b[k * i], &encode_matrix[k * src_idx[i]], k);
  if (gf_invert_matrix(b, inv, k) < 0) return -1;
  for (int i = 0; i < lost; i++) memcpy(&dm[k * i], &inv[k * i], k);
  ec_init_tables(k, lost, dm, g_tbls);
  return 0;
}

int main(int argc, char **argv) {
  int k = argc > 1 ? atoi(argv[1]) : 10, m = argc > 2 ? atoi(argv[2]) : 4;
  size_t size = argc > 3 ? strtoul(argv[3], 0, 10) : 1 << 20;
  double min_round = argc > 4 ? atof(argv[4]) : 0.3;
  // Optional 5th argument: force one of ISA-L's per-ISA entry points ("avx2", "sse") instead of its
  // runtime dispatch (which picks AVX-512 / GFNI where the CPU has them).
  const char *isa = argc > 5 ? argv[5] : "dispatch";
  void (*encode)(int, int, int, unsigned char *, unsigned char **, unsigned char **) = ec_encode_data;
  if (!strcmp(isa, "avx2")) encode = ec_encode_data_avx2;
  else if (!strcmp(isa, "sse")) encode = ec_encode_data_sse;
  else if (strcmp(isa, "dispatch")) return 4;
  int n = k + m, rounds = 3;
  unsigned char *frags[256], *recov[256], *src[256];
  unsigned char encode_matrix[256 * 256], g_tbls[256 * 32 * 256];
  for (int i = 0; i < n; i++) {
    if (posix_memalign((void **)&frags[i], 64, size)) return 1;
    for (size_t j = 0; j < size; j++) frags[i][j] = (unsigned char)rand();
  }
  for (int i = 0; i < m; i++)
    if (posix_memalign((void **)&recov[i], 64, size)) return 1;
  gf_gen_cauchy1_matrix(encode_matrix, n, k);
  double res[3];
  const char *names[3] = {"encode", "reconstructOne", "reconstructAll"};
  printf("{\"k\":%d,\"m\":%d,\"shardSize\":%zu,\"isa\":\"%s\"", k, m, size, isa);
  for (int op = 0; op < 3; op++) {
    int lost = op == 1 ? 1 : m;
    int src_idx[256];
    if (op == 0) ec_init_tables(k, m, &encode_matrix[k * k], g_tbls);
    else if (setup_decode(k, m, lost, encode_matrix, g_tbls, src_idx)) return 2;
    if (op > 0)
      for (int i = 0; i < k; i++) src[i] = frags[src_idx[i]];
    for (int r = 0; r < rounds + 1; r++) {
      double t0 = now();
      long calls = 0;
      do {
        if (op == 0) encode(size, k, m, g_tbls, frags, &frags[k]);
        else encode(size, k, lost, g_tbls, src, recov);
        calls++;
      } while (now() - t0 < min_round);
      if (r > 0) res[r - 1] = (double)k * size * calls / (now() - t0);
    }
    if (op > 0)
      for (int i = 0; i < lost; i++)
        if (memcmp(recov[i], frags[i], size)) return 3;
    qsort(res, rounds, sizeof(double), cmp);
    printf(",\"%s\":%.0f", names[op], res[1]);
  }
  printf("}\n");
  return 0;
}
