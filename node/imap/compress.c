/* COMPRESS=DEFLATE (RFC 4978): after the tagged OK both directions are raw deflate streams
 * (RFC 1951, no zlib header: windowBits -15). Output is flushed with Z_SYNC_FLUSH at the end of
 * every batch of responses (RFC 4978 §4: the client must be able to read a complete response
 * without waiting for more data). Input is inflated a bounded piece at a time by the session
 * (session.c), so a small compressed input cannot turn into unbounded memory. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "node/imap/imap.h"

struct imap_compress {
    z_stream in, out;
    bool in_ready, out_ready;
};

struct imap_compress *imap_compress_new(void)
{
    struct imap_compress *z = calloc(1, sizeof(*z));
    if (!z)
        return NULL;
    /* RFC 4978 §4: level and memory as the sender likes; 6 is zlib's balance */
    if (deflateInit2(&z->out, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    z->out_ready = true;
    if (inflateInit2(&z->in, -15) != Z_OK) {
        imap_compress_free(&z);
        return NULL;
    }
    z->in_ready = true;
    return z;
}

void imap_compress_free(struct imap_compress **zp)
{
    struct imap_compress *z = *zp;
    if (!z)
        return;
    if (z->out_ready)
        deflateEnd(&z->out);
    if (z->in_ready)
        inflateEnd(&z->in);
    free(z);
    *zp = NULL;
}

int imap_compress_deflate(struct imap_compress *z, const void *in, size_t len,
                          struct imap_envelope_out *out)
{
    /* zlib's avail_in is an unsigned int: feed large outputs in pieces */
    const unsigned char *p = in;
    size_t left = len;
    do {
        size_t piece = left > (1u << 30) ? (1u << 30) : left;
        z->out.next_in = (unsigned char *)(uintptr_t)p;
        z->out.avail_in = (unsigned)piece;
        int flush = piece == left ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        do {
            unsigned char buf[16384];
            z->out.next_out = buf;
            z->out.avail_out = sizeof(buf);
            int r = deflate(&z->out, flush);
            if (r != Z_OK && r != Z_BUF_ERROR)
                return -1;
            imap_envelope_out_add(out, (const char *)buf, sizeof(buf) - z->out.avail_out);
            if (out->failed)
                return -1;
        } while (z->out.avail_out == 0 || z->out.avail_in > 0);
        p += piece;
        left -= piece;
    } while (left > 0);
    return 0;
}

int imap_compress_inflate(struct imap_compress *z, const void *in, size_t inlen, size_t *used_r,
                          void *out, size_t outcap, size_t *made_r)
{
    size_t take = inlen > (1u << 30) ? (1u << 30) : inlen;
    z->in.next_in = (unsigned char *)(uintptr_t)in;
    z->in.avail_in = (unsigned)take;
    z->in.next_out = out;
    z->in.avail_out = (unsigned)(outcap > (1u << 30) ? (1u << 30) : outcap);
    unsigned before_out = z->in.avail_out;
    int r = inflate(&z->in, Z_SYNC_FLUSH);
    *used_r = take - z->in.avail_in;
    *made_r = before_out - z->in.avail_out;
    if (r == Z_OK || r == Z_BUF_ERROR)
        return 0;
    /* Z_STREAM_END: the client ended its deflate stream; anything after it is garbage */
    return r == Z_STREAM_END && *used_r == inlen ? 0 : -1;
}
