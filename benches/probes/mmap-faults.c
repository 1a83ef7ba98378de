// Probe: what removes the first-touch page-fault cost of a private (MAP_PRIVATE, PROT_READ|PROT_WRITE)
// file mapping, as tensorvault's Mapping makes it. Each mode maps the whole file afresh, optionally
// applies one advice, copies every byte into a 64 MiB buffer and unmaps; it prints the time, the share
// of the mapping the kernel mapped with 2 MiB PMD entries (smaps FilePmdMapped) and the address
// alignment. Warm the page cache first (e.g. `cat FILE > /dev/null`).
//   gcc -O2 -o /tmp/mmap-faults benches/probes/mmap-faults.c -lpthread
//   /tmp/mmap-faults FILE REPEATS [MODE]
// Results and conclusions: docs/benchmarks-safetensors.md.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>
#include <pthread.h>
#include <stdint.h>
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static size_t len; static int fd; static char *buf; static size_t CH=64<<20;
static void copyall(char*p){for(size_t a=0;a<len;a+=CH){size_t n=len-a<CH?len-a:CH;memcpy(buf,p+a,n);}}
static long pmd(char *p){FILE*f=fopen("/proc/self/smaps","r");char line[512];int in=0;long v=-1;char want[32];snprintf(want,32,"%lx-",(unsigned long)p);
 while(fgets(line,512,f)){ if(strchr(line,'-')&&strncmp(line,want,strlen(want))==0) in=1; else if(in&&strncmp(line,"FilePmdMapped:",14)==0){v=atol(line+14);break;} }
 fclose(f);return v;}
struct pa{char*p;size_t off,n;};
static void*popth(void*a){struct pa*x=a;madvise(x->p+x->off,x->n,MADV_POPULATE_READ);return 0;}
static char* mapit(int flags, int align){
  if(!align) return mmap(0,len,PROT_READ|PROT_WRITE,MAP_PRIVATE|flags,fd,0);
  size_t H=2<<20; char*r=mmap(0,len+H,PROT_NONE,MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE,-1,0);
  char*a=(char*)(((uintptr_t)r+H-1)&~(H-1));
  char*p=mmap(a,len,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_FIXED|flags,fd,0);
  if(a>r) munmap(r,a-r);
  size_t tail=(r+len+H)-(a+len);
  if(tail) munmap(a+len,tail);
  return p;}
int main(int argc,char**argv){
  fd=open(argv[1],O_RDONLY); struct stat st; fstat(fd,&st); len=st.st_size; buf=malloc(CH); memset(buf,1,CH);
  const char* modes[]={"plain","second-pass","populate-read","populate-2threads","willneed","sequential","hugepage","hugepage+align","align","map_populate","populate-read-chunks"};
  int reps=atoi(argv[2]);
  for(int r=0;r<reps;r++) for(int m=0;m<11;m++){
    if(argc>3 && atoi(argv[3])!=m) continue;
    double t0=now(); char*p; int align=(m==7||m==8);
    p=mapit(m==9?MAP_POPULATE:0,align);
    if(p==MAP_FAILED){perror("mmap");return 1;}
    double t1=now();
    if(m==1) copyall(p);
    double tp0=now();
    if(m==2) madvise(p,len,MADV_POPULATE_READ);
    if(m==3){pthread_t t[2];struct pa a[2]={{p,0,len/2&~4095UL},{p,len/2&~4095UL,len-(len/2&~4095UL)}};for(int i=0;i<2;i++)pthread_create(&t[i],0,popth,&a[i]);for(int i=0;i<2;i++)pthread_join(t[i],0);}
    if(m==4) madvise(p,len,MADV_WILLNEED);
    if(m==5) madvise(p,len,MADV_SEQUENTIAL);
    if(m==6||m==7) madvise(p,len,MADV_HUGEPAGE);
    double t2=now();
    if(m==10){ for(size_t a=0;a<len;a+=CH){size_t n=len-a<CH?len-a:CH; madvise(p+a,n,MADV_POPULATE_READ); memcpy(buf,p+a,n);} }
    else copyall(p);
    double t3=now();
    long pm=pmd(p);
    munmap(p,len); double t4=now();
    printf("%-22s map %7.2f ms  prep %7.1f  copy %7.1f  total %7.1f ms = %5.2f GB/s  munmap %6.1f  FilePmdMapped %ld kB  addr%%2M=%lx\n",
      modes[m],t1-t0,t2-tp0,t3-t2,(t3-t0)-(tp0-t1),len/1e6/((t3-t0)-(tp0-t1)),t4-t3,pm,(unsigned long)p&((2<<20)-1));
  }
}
