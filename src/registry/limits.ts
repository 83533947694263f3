/** Smallest chunk clients are asked to send (R2's minimum multipart part size: 5 MiB). */
export const MIN_CHUNK_SIZE = 5 * 1024 * 1024;
