#include <stdio.h>
int main(void)
{
	fputs("capstan-agent: not built yet\n", stderr);
	return 1;
}
