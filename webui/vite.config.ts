import { defineConfig } from 'vite';

// No @vitejs/plugin-react: esbuild compiles TSX with the automatic JSX runtime on its own.
// `npm run dev` proxies /api to a running appliance (MISTUDIO_API, default the `mistudio up` port).
const apiTarget = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
  .MISTUDIO_API ?? 'http://127.0.0.1:8000';

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    assetsDir: 'assets',
    reportCompressedSize: true,
    rollupOptions: {
      onwarn(warning, warn) {
        // lucide-react marks its modules "use client" (for React Server Components): irrelevant here.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
      output: {
        entryFileNames: 'assets/index-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
  server: {
    proxy: {
      '/api': { target: apiTarget, changeOrigin: false },
    },
  },
});
