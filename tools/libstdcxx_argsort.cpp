// Writes tests/fixtures/moe/libstdcxx_argsort.json: what libstdc++ std::sort (and make_heap + sort_heap)
// leave for index arrays sorted by key, descending, with many ties (as ggml argsort on the CPU).
// g++ -O2 -std=c++17 tools/libstdcxx_argsort.cpp -o target/argsort && target/argsort > tests/fixtures/moe/libstdcxx_argsort.json
#include <algorithm>
#include <cstdio>
#include <vector>
#include <cstdint>
int main() {
  printf("[\n");
  int cases[][3] = {{17,3,1},{40,4,2},{128,5,3},{128,9,4},{128,2,5},{200,7,6},{64,64,7},{33,1,8}};
  bool firstc = true;
  for (auto &c : cases) {
    int n = c[0], m = c[1], seed = c[2];
    std::vector<float> keys(n);
    uint32_t s = 12345u * seed + 1;
    for (int i = 0; i < n; i++) { s = s * 1103515245u + 12345u; keys[i] = (float)((s >> 16) % m) * 0.125f; }
    std::vector<int32_t> idx(n), heap(n);
    for (int i = 0; i < n; i++) idx[i] = heap[i] = i;
    auto cmp = [&](int32_t a, int32_t b) { return keys[a] > keys[b]; };
    std::sort(idx.begin(), idx.end(), cmp);
    std::make_heap(heap.begin(), heap.end(), cmp);
    std::sort_heap(heap.begin(), heap.end(), cmp);
    printf("%s {\"keys\": [", firstc ? "" : ",");
    firstc = false;
    for (int i = 0; i < n; i++) printf("%s%g", i ? "," : "", keys[i]);
    printf("], \"sort\": [");
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", idx[i]);
    printf("], \"heap\": [");
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", heap[i]);
    printf("]}\n");
  }
  printf("]\n");
}
