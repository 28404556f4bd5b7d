# Writes one w x h RGB PNG to stdout: frame f of n, a gradient with a bar sweeping across.
# Uncompressed (stored) deflate blocks keep this a page of awk; any PNG reader opens it.
function byte(b) { data[len++] = b }
function be32(v) { byte(rshift(v, 24)); byte(and(rshift(v, 16), 255)); byte(and(rshift(v, 8), 255)); byte(and(v, 255)) }
function crc(from, to,   c, i) {
    c = 4294967295
    for (i = from; i < to; i++) c = xor(table[and(xor(c, data[i]), 255)], rshift(c, 8))
    return xor(c, 4294967295)
}
function chunk(type, body, count,   start, i) {
    be32(count); start = len
    for (i = 1; i <= 4; i++) byte(ord[substr(type, i, 1)])
    for (i = 0; i < count; i++) byte(body[i])
    be32(crc(start, len))
}
function pixel(x, y,   bar) {
    bar = int((f - 1) * w / n)
    if (x >= bar && x < bar + int(w / n) + 1) { raw[rawlen++] = 255; raw[rawlen++] = 255; raw[rawlen++] = 255; return }
    raw[rawlen++] = int(255 * x / w); raw[rawlen++] = int(255 * y / h); raw[rawlen++] = int(255 * f / n)
}
BEGIN {
    for (i = 0; i < 256; i++) {
        c = i
        for (k = 0; k < 8; k++) c = and(c, 1) ? xor(3988292384, rshift(c, 1)) : rshift(c, 1)
        table[i] = c
    }
    for (i = 65; i <= 90; i++) ord[sprintf("%c", i)] = i
    for (i = 97; i <= 122; i++) ord[sprintf("%c", i)] = i
    split("137 80 78 71 13 10 26 10", sig, " ")
    for (i = 1; i <= 8; i++) byte(sig[i])
    hdr[0] = rshift(w, 24); hdr[1] = and(rshift(w, 16), 255); hdr[2] = and(rshift(w, 8), 255); hdr[3] = and(w, 255)
    hdr[4] = rshift(h, 24); hdr[5] = and(rshift(h, 16), 255); hdr[6] = and(rshift(h, 8), 255); hdr[7] = and(h, 255)
    hdr[8] = 8; hdr[9] = 2; hdr[10] = 0; hdr[11] = 0; hdr[12] = 0
    chunk("IHDR", hdr, 13)
    rawlen = 0
    for (y = 0; y < h; y++) { raw[rawlen++] = 0; for (x = 0; x < w; x++) pixel(x, y) }
    # zlib: header, stored blocks of at most 65535 bytes, Adler-32 of the raw bytes
    z = 0; zl[z++] = 120; zl[z++] = 1
    for (start = 0; start < rawlen; start += 65535) {
        size = rawlen - start; if (size > 65535) size = 65535
        zl[z++] = (start + size >= rawlen) ? 1 : 0
        zl[z++] = and(size, 255); zl[z++] = rshift(size, 8)
        zl[z++] = and(xor(size, 65535), 255); zl[z++] = rshift(xor(size, 65535), 8)
        for (i = 0; i < size; i++) zl[z++] = raw[start + i]
    }
    a = 1; b = 0
    for (i = 0; i < rawlen; i++) { a = (a + raw[i]) % 65521; b = (b + a) % 65521 }
    zl[z++] = rshift(b, 8); zl[z++] = and(b, 255); zl[z++] = rshift(a, 8); zl[z++] = and(a, 255)
    chunk("IDAT", zl, z)
    chunk("IEND", none, 0)
    for (i = 0; i < len; i++) printf "%c", data[i]
}
