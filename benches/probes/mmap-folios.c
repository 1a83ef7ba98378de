// Probe: first-touch cost of a private file mapping depending on the folio sizes in the page cache,
// with and without MADV_POPULATE_READ (one thread, two threads) and MADV_HUGEPAGE. It evicts the
// first LEN bytes of FILE from the page cache (POSIX_FADV_DONTNEED), refills them one way
// (read64m: 64 MiB preads, large folios from readahead; read16k: 16 KiB preads without readahead,
// small folios; mmap / mmap-huge: touching a shared mapping, without / with MADV_HUGEPAGE), then
// measures each mode twice (first touch, then a second pass over the same mapping).
//   gcc -O2 -o /tmp/mmap-folios benches/probes/mmap-folios.c -lpthread
//   /tmp/mmap-folios FILE LEN read64m|read16k|mmap|mmap-huge
// Results and conclusions: docs/benchmarks-safetensors.md.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>
#include <pthread.h>
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static size_t len; static int fd; static char *buf; static size_t CH=64<<20;
static long pmd(char *p){FILE*f=fopen("/proc/self/smaps","r");char line[512];int in=0;long v=-1;char want[32];snprintf(want,32,"%lx-",(unsigned long)p);
 while(fgets(line,512,f)){ if(strchr(line,'-')&&strncmp(line,want,strlen(want))==0) in=1; else if(in&&strncmp(line,"FilePmdMapped:",14)==0){v=atol(line+14);break;} }
 fclose(f);return v;}
static long minflt(){struct rusage r;getrusage(RUSAGE_SELF,&r);return r.ru_minflt;}
struct pa{char*p;size_t off,n;};
static void*popth(void*a){struct pa*x=a;madvise(x->p+x->off,x->n,MADV_POPULATE_READ);return 0;}
int main(int argc,char**argv){
  fd=open(argv[1],O_RDONLY); len=atol(argv[2]); buf=malloc(CH); memset(buf,1,CH);
  const char*fill=argv[3];
  posix_fadvise(fd,0,len,POSIX_FADV_DONTNEED);
  double t0=now();
  if(!strcmp(fill,"read64m")){ for(size_t a=0;a<len;a+=CH) pread(fd,buf,CH,a); }
  else if(!strcmp(fill,"read16k")){ posix_fadvise(fd,0,len,POSIX_FADV_RANDOM); for(size_t a=0;a<len;a+=16384) pread(fd,buf,16384,a); posix_fadvise(fd,0,len,POSIX_FADV_NORMAL);}
  else if(!strcmp(fill,"mmap-huge")||!strcmp(fill,"mmap")){ char*p=mmap(0,len,PROT_READ,MAP_SHARED,fd,0); if(fill[4]) madvise(p,len,MADV_HUGEPAGE); volatile char x=0; for(size_t a=0;a<len;a+=4096) x^=p[a]; munmap(p,len);}
  printf("fill %s: %.0f ms\n",fill,now()-t0);
  for(int m=0;m<4;m++) for(int r=0;r<2;r++){
    char*p=mmap(0,len,PROT_READ|PROT_WRITE,MAP_PRIVATE,fd,0);
    if(m==3) madvise(p,len,MADV_HUGEPAGE);
    long f0=minflt(); double a=now();
    if(m==1) madvise(p,len,MADV_POPULATE_READ);
    if(m==2){pthread_t t[2];struct pa x[2]={{p,0,len/2&~4095UL},{p,len/2&~4095UL,len-(len/2&~4095UL)}};for(int i=0;i<2;i++)pthread_create(&t[i],0,popth,&x[i]);for(int i=0;i<2;i++)pthread_join(t[i],0);}
    double b=now();
    for(size_t o=0;o<len;o+=CH){size_t n=len-o<CH?len-o:CH;memcpy(buf,p+o,n);}
    double c=now();
    for(size_t o=0;o<len;o+=CH){size_t n=len-o<CH?len-o:CH;memcpy(buf,p+o,n);}
    double d=now();
    const char*nm[]={"plain","populate","populate-2thr","hugepage"};
    printf("  %-14s prep %6.1f ms  first copy %6.1f  => first-touch total %5.2f GB/s   second pass %5.2f GB/s  faults %ld  pmd %ld MiB\n",nm[m],b-a,c-b,len/1e6/(c-a),len/1e6/(d-c),minflt()-f0,pmd(p)/1024);
    munmap(p,len);
  }
}
